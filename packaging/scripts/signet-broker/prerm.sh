#!/bin/sh
# signet-broker's prerm (deb "remove") and %preun (rpm: 0 erase, 1 upgrade).
set -e
case "$1" in
remove|0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now signet-broker.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
