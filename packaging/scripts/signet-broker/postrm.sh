#!/bin/sh
# signet-broker's postrm (deb) and %postun (rpm). The JetStream store in
# /var/lib/signet-broker is kept, even on purge: it holds the fleet's run
# state and locks. Remove it by hand when the broker is gone for good.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
