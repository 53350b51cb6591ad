#!/bin/sh
# signet-broker's postinst (deb "configure") and %post (rpm: 1 install,
# 2 upgrade). The unit's DynamicUser and StateDirectory need no user or
# directory made here.
set -e
case "$1" in
configure) [ -z "$2" ] && first=yes || first=no ;;
1) first=yes ;;
[0-9]*) first=no ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ "$first" = yes ]; then
		# A broker for this host only (127.0.0.1:4222) until
		# /etc/signet/broker.env says otherwise.
		systemctl enable --now signet-broker.service >/dev/null 2>&1 || true
	else
		systemctl try-restart signet-broker.service >/dev/null 2>&1 || true
	fi
fi
exit 0
