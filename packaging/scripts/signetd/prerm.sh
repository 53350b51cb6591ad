#!/bin/sh
# signetd's prerm (deb "remove") and %preun (rpm: 0 erase, 1 upgrade).
# Stop and disable the daemon only when the package goes away.
set -e
case "$1" in
remove|0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now signetd.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
