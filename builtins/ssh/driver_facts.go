package ssh

import (
	"fmt"
	"strings"
)

// HostFacts are what studiorun learns of a host before it checks its
// tasks, in one round trip (factsScript, parsed by ParseFacts).
type HostFacts struct {
	OSID           string `json:"os_id"`           // ID of /etc/os-release: debian, rocky, centos...
	OSLike         string `json:"os_like"`         // ID_LIKE
	Version        string `json:"version"`         // VERSION_ID
	OSFamily       string `json:"os_family"`       // "debian", "el" or ""
	PackageManager string `json:"package_manager"` // apt, dnf, yum or ""
	Init           string `json:"init"`            // "systemd" or ""
	AdminGroup     string `json:"admin_group"`     // wheel on EL, sudo on Debian
	User           string `json:"user"`            // the login user
	Root           bool   `json:"root"`            // the login user is root
	SudoNoPassword bool   `json:"sudo_nopasswd"`   // sudo -n works
	// SFTPServer is the path of OpenSSH's sftp-server program, or "": the
	// driver runs it through sudo to transfer files as root.
	SFTPServer string `json:"sftp_server"`
}

// factsScript prints the facts as key=value lines. It runs as the login
// user (not through sudo: it tells how sudo must be run).
const factsScript = `(. /etc/os-release 2>/dev/null; echo "id=$ID"; echo "id_like=$ID_LIKE"; echo "version_id=$VERSION_ID")
for p in apt-get dnf yum; do command -v $p >/dev/null 2>&1 && echo "pm=$p"; done
[ -d /run/systemd/system ] && echo init=systemd
for g in wheel sudo; do getent group $g >/dev/null 2>&1 && echo "group=$g"; done
echo "user=$(id -un)"
echo "uid=$(id -u)"
for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server; do [ -x "$p" ] && { echo "sftp_server=$p"; break; }; done
[ "$(id -u)" = 0 ] || { sudo -n true </dev/null >/dev/null 2>&1 && echo sudo=nopasswd; }
echo end=1
`

// ParseFacts reads the output of factsScript.
func ParseFacts(out string) (HostFacts, error) {
	var f HostFacts
	var pms, groups []string
	end := false
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "id":
			f.OSID = v
		case "id_like":
			f.OSLike = v
		case "version_id":
			f.Version = v
		case "pm":
			pms = append(pms, v)
		case "init":
			f.Init = v
		case "group":
			groups = append(groups, v)
		case "user":
			f.User = v
		case "uid":
			f.Root = v == "0"
		case "sftp_server":
			f.SFTPServer = v
		case "sudo":
			f.SudoNoPassword = v == "nopasswd"
		case "end":
			end = true
		}
	}
	if !end {
		return f, fmt.Errorf("gather facts: the output ends early: %q", out)
	}
	ids := " " + f.OSID + " " + f.OSLike + " "
	switch {
	case strings.Contains(ids, " debian ") || strings.Contains(ids, " ubuntu "):
		f.OSFamily = "debian"
	case strings.Contains(ids, " rhel ") || strings.Contains(ids, " fedora ") || strings.Contains(ids, " centos "):
		f.OSFamily = "el"
	}
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	switch {
	case f.OSFamily == "debian" && has(pms, "apt-get"):
		f.PackageManager = "apt"
	case has(pms, "dnf"):
		f.PackageManager = "dnf"
	case has(pms, "yum"):
		f.PackageManager = "yum"
	case has(pms, "apt-get"):
		f.PackageManager = "apt"
	}
	switch {
	case f.OSFamily == "el":
		f.AdminGroup = "wheel"
	case f.OSFamily == "debian":
		f.AdminGroup = "sudo"
	case has(groups, "wheel"):
		f.AdminGroup = "wheel"
	case has(groups, "sudo"):
		f.AdminGroup = "sudo"
	}
	return f, nil
}

// Resolve returns a group name with a fact (${facts.admin_group}) replaced
// by its value on the host.
func (f *HostFacts) Resolve(g Group) (string, error) {
	if !g.IsFact() {
		return string(g), nil
	}
	name := strings.TrimSuffix(strings.TrimPrefix(string(g), "${facts."), "}")
	var v string
	switch name {
	case "admin_group":
		v = f.AdminGroup
	case "os_family":
		v = f.OSFamily
	case "package_manager":
		v = f.PackageManager
	default:
		return "", fmt.Errorf("unknown fact %s", g)
	}
	if v == "" {
		return "", fmt.Errorf("fact %s is unknown on this host (os %q, like %q)", name, f.OSID, f.OSLike)
	}
	return v, nil
}
