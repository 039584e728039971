//! `burstflare-agent`: the small static binary injected into every session container. It
//! will serve SSH, the browser terminal's PTY and snapshot pack/unpack (issues 8 and 9); for
//! now it reports its version so images can be checked for a matching agent.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "version") => println!("burstflare-agent {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("usage: burstflare-agent --version");
            std::process::exit(2);
        }
    }
}
