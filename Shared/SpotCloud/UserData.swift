import Foundation

/// The user data of an instance SpotGuard launches: a script that writes the agent's settings
/// to `/etc/spotguard/agent.env` (readable by root only) and runs the agent as a supervised
/// systemd service (`Restart=always`), never as a bare process that dies with its shell. An
/// image that already has the agent's unit (the package, or a baked AMI) keeps its own; the
/// script only installs one where none exists. The simulator reads the same settings back.
public enum UserData {
    static let envBegin = "cat > /etc/spotguard/agent.env <<'SPOTGUARD_ENV'"
    static let envEnd = "SPOTGUARD_ENV"

    /// The agent's systemd unit: the package installs it (`make agent-package`), and the user
    /// data writes it on an image that has the agent's binary but no unit. A dedicated user
    /// (`spotguard-agent`, the package's system user; a dynamic one where it does not exist),
    /// restarted whatever happens except a bad setting (exit 2: restarting cannot fix it), and
    /// hardened: no new privileges, no capabilities, the file system read-only but for its state
    /// directory (the spool), no devices, no kernel tunables or modules. Operator settings are
    /// in `agent.conf` (the package's), what SpotGuard's user data wrote in `agent.env`.
    public static let unit = """
        [Unit]
        Description=SpotGuard agent
        Documentation=https://github.com/spotguard/spotguard/blob/main/docs/agent.md
        Wants=network-online.target
        After=network-online.target

        [Service]
        Type=simple
        User=spotguard-agent
        Group=spotguard-agent
        DynamicUser=yes
        EnvironmentFile=-/etc/spotguard/agent.conf
        EnvironmentFile=-/etc/spotguard/agent.env
        ExecStart=/usr/bin/spotguard-agent run
        Restart=always
        RestartSec=2
        RestartPreventExitStatus=2
        StateDirectory=spotguard-agent
        UMask=0077
        NoNewPrivileges=yes
        CapabilityBoundingSet=
        ProtectSystem=strict
        ProtectHome=read-only
        PrivateTmp=yes
        PrivateDevices=yes
        ProtectKernelTunables=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectControlGroups=yes
        ProtectClock=yes
        ProtectHostname=yes
        RestrictSUIDSGID=yes
        RestrictRealtime=yes
        RestrictNamespaces=yes
        LockPersonality=yes
        SystemCallArchitectures=native
        RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX

        [Install]
        WantedBy=multi-user.target
        """

    /// A script that starts the agent with these settings (`SPOTGUARD_AGENT_*` names).
    public static func script(_ settings: [(String, String)]) -> String {
        let env = settings.map { "\($0.0)=\(quoted($0.1))" }
        return
            ([
                "#!/bin/sh", "# SpotGuard: the agent of this instance, as a supervised service", "set -eu", "umask 077", "mkdir -p /etc/spotguard",
                envBegin,
            ] + env + [
                envEnd,
                "if [ ! -e /etc/systemd/system/spotguard-agent.service ] && [ ! -e /lib/systemd/system/spotguard-agent.service ]; then",
                "cat > /etc/systemd/system/spotguard-agent.service <<'SPOTGUARD_UNIT'", unit, "SPOTGUARD_UNIT", "fi",
                "systemctl daemon-reload", "systemctl enable spotguard-agent.service", "systemctl restart spotguard-agent.service",
            ]).joined(separator: "\n") + "\n"
    }

    /// The settings a script of `script(_:)` writes.
    public static func settings(_ script: String) -> [String: String] {
        var out: [String: String] = [:]
        var inside = false
        for line in script.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == envBegin {
                inside = true
            } else if line == envEnd {
                inside = false
            } else if inside, let eq = line.firstIndex(of: "=") {
                out[String(line[..<eq])] = unquoted(String(line[line.index(after: eq)...]))
            }
        }
        return out
    }

    /// systemd's EnvironmentFile quoting: double quotes with `\`, `"`, `$` and `` ` `` escaped;
    /// a setting never spans lines (a line break becomes a space).
    static func quoted(_ value: String) -> String {
        var out = "\""
        for c in value {
            if "\\\"$`".contains(c) { out.append("\\") }
            out.append(c.isNewline ? " " : c)
        }
        return out + "\""
    }

    static func unquoted(_ value: String) -> String {
        guard value.count >= 2, value.first == "\"", value.last == "\"" else { return value }
        var out = ""
        var escaped = false
        for c in value.dropFirst().dropLast() {
            if escaped {
                out.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}
