#!/usr/bin/env bash
# Install the command-line tools the monitoring and web tests drive (called by ensure-all.sh):
# net-snmp's agent and client, promtool, gmond and gmetric, the monitoring-plugins, and a
# headless Chromium with its driver. None of them is started here: each test starts the private
# instance it needs (snmpd, gmond) on its own port, and stops it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

# command -> Debian package
declare -A TOOLS=(
    [snmpwalk]=snmp
    [snmpd]=snmpd
    [promtool]=prometheus
    [gmond]=ganglia-monitor
    [/usr/lib/nagios/plugins/check_tcp]=monitoring-plugins-basic
    [chromium]=chromium
    [chromedriver]=chromium-driver
)

missing=()
for cmd in "${!TOOLS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${TOOLS[$cmd]}")
done
# snmptranslate needs the SMIv2 base modules (SNMPv2-SMI, -TC, -CONF) to load our MIB. Debian
# main ships them only in erlang-snmp (snmp-mibs-downloader is non-free and downloads them).
smi() { compgen -G "/usr/lib/erlang/lib/snmp-*/mibs/SNMPv2-SMI.mib" >/dev/null; }
smi || missing+=(erlang-snmp)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi
for cmd in "${!TOOLS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || fail "$cmd (Debian package ${TOOLS[$cmd]}) is still missing"
done
smi || fail "the SMIv2 base MIBs (Debian package erlang-snmp) are still missing"
echo "tools: ${!TOOLS[*]} SNMPv2-SMI"
