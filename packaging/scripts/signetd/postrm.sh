#!/bin/sh
# signetd's postrm (deb) and %postun (rpm: 0 erase, 1 upgrade).
set -e
case "$1" in
purge)
	# dpkg removes the conffiles; the host key is the package's own
	# creation, so it goes too. The audit log stays: an audit trail is
	# not the package's to delete.
	rm -f /etc/signet/host_key /etc/signet/host_key.pub
	rmdir /etc/signet 2>/dev/null || true
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
