//! Ids and validated names refuse bad input with a message naming the field and the limit.

use domain::ids::{DisplayName, Email, IdError, Role, Slug, UserId, WorkspaceId};

#[test]
fn a_new_id_is_a_uuidv7_that_parses_back_to_itself() {
    let id = UserId::new();
    let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    assert_eq!(UserId::parse(id.as_str()).unwrap(), id);
}

#[test]
fn ids_are_created_in_increasing_order() {
    let ids: Vec<UserId> = (0..100).map(|_| UserId::new()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn an_id_is_stored_in_one_spelling_whatever_spelling_it_was_given_in() {
    let id = UserId::parse("{0190A3B2-7C4D-7E5F-8A6B-1C2D3E4F5A6B}").unwrap();
    assert_eq!(id.as_str(), "0190a3b2-7c4d-7e5f-8a6b-1c2d3e4f5a6b");
}

#[test]
fn an_id_that_is_not_a_uuid_is_refused_naming_the_field() {
    for bad in ["", "42", "not-a-uuid", "0190a3b2-7c4d-7e5f-8a6b-1c2d3e4f5a6"] {
        let err = WorkspaceId::parse(bad).unwrap_err();
        assert_eq!(err.to_string(), "workspace id: must be a UUID", "for {bad:?}");
    }
}

#[test]
fn an_id_serializes_as_a_plain_string_and_refuses_to_deserialize_from_a_non_uuid() {
    let id = UserId::new();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{id}\""));
    assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
    let err = serde_json::from_str::<UserId>("\"nope\"").unwrap_err();
    assert!(err.to_string().contains("user id: must be a UUID"), "{err}");
}

#[test]
fn an_email_is_trimmed_and_lowercased() {
    let email = Email::parse("  Alice.Smith@Example.COM \n").unwrap();
    assert_eq!(email.as_str(), "alice.smith@example.com");
    assert_eq!(email.local_part(), "alice.smith");
}

#[test]
fn an_email_longer_than_254_characters_is_refused_naming_the_limit() {
    let at_limit = format!("{}@example.com", "a".repeat(254 - "@example.com".len()));
    assert!(Email::parse(&at_limit).is_ok());
    let err = Email::parse(&format!("a{at_limit}")).unwrap_err();
    assert_eq!(err, IdError::TooLong { field: "email", max: 254 });
    assert_eq!(err.to_string(), "email: must be at most 254 characters");
}

#[test]
fn an_email_without_exactly_one_at_sign_is_refused() {
    for bad in ["alice.example.com", "alice@@example.com", "a@b@example.com"] {
        assert_eq!(
            Email::parse(bad).unwrap_err().to_string(),
            "email: must contain exactly one @",
            "for {bad:?}"
        );
    }
}

#[test]
fn an_email_with_nothing_before_or_after_the_at_sign_is_refused() {
    for bad in ["@example.com", "alice@", "@"] {
        assert_eq!(
            Email::parse(bad).unwrap_err().to_string(),
            "email: must have text before and after the @",
            "for {bad:?}"
        );
    }
    assert_eq!(Email::parse("   ").unwrap_err().to_string(), "email: must not be empty");
    assert_eq!(
        Email::parse("al ice@example.com").unwrap_err().to_string(),
        "email: must not contain spaces or control characters"
    );
}

#[test]
fn a_slug_allows_lowercase_letters_digits_and_inner_dashes_up_to_48_characters() {
    for good in ["a", "acme", "team-42", &"x".repeat(48)] {
        assert_eq!(Slug::parse(good).unwrap().as_str(), good);
    }
    assert_eq!(Slug::parse("").unwrap_err().to_string(), "slug: must not be empty");
    assert_eq!(
        Slug::parse(&"x".repeat(49)).unwrap_err().to_string(),
        "slug: must be at most 48 characters"
    );
    for bad in ["Acme", "acme_corp", "acme corp", "café"] {
        assert_eq!(
            Slug::parse(bad).unwrap_err().to_string(),
            "slug: may contain only lowercase letters a-z, digits 0-9 and '-'",
            "for {bad:?}"
        );
    }
    for bad in ["-acme", "acme-", "-"] {
        assert_eq!(
            Slug::parse(bad).unwrap_err().to_string(),
            "slug: must not start or end with '-'",
            "for {bad:?}"
        );
    }
}

#[test]
fn a_slug_can_be_suggested_from_arbitrary_text() {
    assert_eq!(Slug::suggest("Alice.Smith+dev", 48).unwrap().as_str(), "alice-smith-dev");
    assert_eq!(Slug::suggest("--Ünïcode--", 48).unwrap().as_str(), "n-code");
    assert_eq!(Slug::suggest("abcdef", 3).unwrap().as_str(), "abc");
    assert_eq!(Slug::suggest("ab.cd", 3).unwrap().as_str(), "ab");
    assert!(Slug::suggest("+++", 48).is_none());
}

#[test]
fn a_display_name_is_trimmed_and_holds_1_to_100_characters_without_control_characters() {
    assert_eq!(DisplayName::parse("  Ada Lovelace ").unwrap().as_str(), "Ada Lovelace");
    assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
    assert_eq!(DisplayName::parse(" ").unwrap_err().to_string(), "display_name: must not be empty");
    assert_eq!(
        DisplayName::parse(&"é".repeat(101)).unwrap_err().to_string(),
        "display_name: must be at most 100 characters"
    );
    assert_eq!(
        DisplayName::parse("Ada\u{0}Lovelace").unwrap_err().to_string(),
        "display_name: must not contain control characters"
    );
}

#[test]
fn a_role_round_trips_through_its_stored_spelling_and_refuses_others() {
    for role in Role::ALL {
        assert_eq!(Role::parse(role.as_str()).unwrap(), role);
    }
    assert_eq!(
        Role::parse("superuser").unwrap_err().to_string(),
        "role: must be one of owner, admin, member, viewer"
    );
}
