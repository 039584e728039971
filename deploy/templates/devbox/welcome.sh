#!/bin/sh
# Prints the message of the day and where this session came from.
cat /etc/motd
echo "  template: $(cat /etc/burstflare-template 2>/dev/null || echo unknown)"
