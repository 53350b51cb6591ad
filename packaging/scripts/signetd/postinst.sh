#!/bin/sh
# signetd's postinst (deb "configure") and %post (rpm: 1 install, 2 upgrade).
set -e

case "$1" in
configure) [ -z "$2" ] && first=yes || first=no ;;
1) first=yes ;;
[0-9]*) first=no ;;
*) exit 0 ;;
esac

# The host key: signetd --print-host-key loads the key the config names or,
# when there is none, creates it (0600, with a .pub beside it). It never
# replaces an existing key, so an upgrade keeps the host's identity.
if line=$(/usr/bin/signetd --print-host-key --config /etc/signet/signetd.yaml 2>&1); then
	echo "signetd: add this host to the operators' known_hosts:"
	echo "  $line"
else
	echo "signetd: could not read or create the host key: $line" >&2
	echo "hint: fix the config (signetd --check), then run signetd --print-host-key" >&2
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ "$first" = yes ]; then
		# Enabled, not started: set the broker URL, authorized_keys and
		# the policy first, then systemctl start signetd.
		systemctl enable signetd.service >/dev/null 2>&1 || true
		echo "signetd: configure /etc/signet, then: systemctl start signetd"
	else
		# --no-block: a package action of signetd itself may be running
		# this upgrade; the old daemon finishes it, then the new one starts.
		systemctl try-restart --no-block signetd.service >/dev/null 2>&1 || true
	fi
fi
exit 0
