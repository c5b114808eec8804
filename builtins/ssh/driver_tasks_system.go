package ssh

import (
	"fmt"
	"strings"

	"github.com/studiorun/studiorun/runtime/apply"
)

// installedPackages reads the check's pkg lines: "<name> <status>".
func (p Probe) installedPackages() map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(p["pkg"], "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[1] == "installed" {
			out[f[0]] = true
		}
	}
	return out
}

// PackageCommand returns the command that installs (or removes) names in
// one transaction of the package manager.
func PackageCommand(pm, state string, names []string) string {
	q := QuoteArgs(names...)
	switch pm {
	case "apt":
		if state == "absent" {
			return "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q " + q
		}
		// A fresh image may have no package lists yet: update once on failure.
		install := "DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold " + q
		return install + " || { apt-get update -q && " + install + "; }"
	default:
		switch state {
		case "absent":
			return pm + " remove -y " + q
		case "latest":
			return pm + " install -y " + q + " && " + pm + " upgrade -y " + q
		}
		return pm + " install -y " + q
	}
}

func decidePackage(t *Package, f *HostFacts, p Probe) *Decision {
	installed := p.installedPackages()
	var have, missing []string
	for _, n := range t.Names {
		if installed[n] {
			have = append(have, n)
		} else {
			missing = append(missing, n)
		}
	}
	switch t.State {
	case "absent":
		if len(have) == 0 {
			return noop("not installed: " + joinList(t.Names))
		}
		d := &Decision{}
		d.attr("installed", joinList(have), "")
		d.Script.Add(PackageCommand(f.PackageManager, "absent", have))
		return d
	case "latest":
		if len(missing) == 0 && (p["upgrades"] == "" || p["upgrades"] == "0") {
			return noop("installed and up to date: " + joinList(t.Names))
		}
		d := &Decision{}
		d.attr("installed", joinList(have), joinList(t.Names))
		d.Attrs[0].Note = "install or upgrade to the latest version"
		d.Script.Add(PackageCommand(f.PackageManager, "latest", t.Names))
		return d
	}
	if len(missing) == 0 {
		return noop("installed: " + joinList(t.Names))
	}
	d := &Decision{}
	if len(have) == 0 {
		d.Action = apply.Create
	}
	d.attr("installed", joinList(have), joinList(t.Names))
	d.Script.Add(PackageCommand(f.PackageManager, "present", missing))
	return d
}

// enabledStates are what systemctl is-enabled says of a unit that starts
// at boot (or that cannot be enabled, being static or generated).
var enabledStates = map[string]bool{"enabled": true, "enabled-runtime": true, "static": true, "alias": true, "indirect": true, "generated": true}

// unitDirs are where systemd reads unit files from, first match wins.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// unitSuffixes are the unit types that a unit name may end with;
// systemctl takes a name without one for a service.
var unitSuffixes = []string{".service", ".socket", ".target", ".timer", ".mount", ".automount", ".swap", ".path", ".slice", ".scope", ".device"}

// unitFile is the file name of a unit: its name, with .service added when
// it has no unit type, as systemctl reads it.
func unitFile(name string) string {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) {
			return name
		}
	}
	return name + ".service"
}

func decideService(t *Service, p Probe) *Decision {
	d := noop("service " + t.Name + " is as declared")
	notLoaded := p["load"] == "not-found" || p["load"] == ""
	if notLoaded && p["unitfile"] == "" {
		d.Pending = fmt.Sprintf("unit %s is not found (yet: an earlier package task may install it)", t.Name)
	}
	// systemd reads a unit file written since it loaded its units (or
	// changed since) at a daemon-reload.
	daemonReload := notLoaded && p["unitfile"] != "" || p["reload"] == "yes"
	if t.Enabled != nil {
		on := enabledStates[p["enabled"]]
		if on != *t.Enabled {
			if *t.Enabled {
				d.attr("enabled", "false", "true")
				d.Script.Cmd("systemctl", "enable", t.Name)
			} else {
				d.attr("enabled", "true", "false")
				d.Script.Cmd("systemctl", "disable", t.Name)
			}
		}
	}
	active := p["active"] == "active" || p["active"] == "activating" || p["active"] == "reloading"
	switch t.State {
	case "started":
		if !active {
			d.attr("state", p["active"], "started")
			d.Script.Cmd("systemctl", "start", t.Name)
		}
	case "stopped":
		if active {
			d.attr("state", p["active"], "stopped")
			d.Script.Cmd("systemctl", "stop", t.Name)
		}
	case "restarted":
		d.attr("state", p["active"], "restarted")
		d.Script.Cmd("systemctl", "restart", t.Name)
	case "reloaded":
		d.attr("state", p["active"], "reloaded")
		if active {
			d.Script.Cmd("systemctl", "reload", t.Name)
		} else {
			d.Script.Cmd("systemctl", "start", t.Name)
		}
	}
	if d.Action == apply.NoOp {
		d.Pending = ""
	} else if daemonReload {
		var s Script
		s.Cmd("systemctl", "daemon-reload")
		s.Append(d.Script)
		d.Script = s
	}
	return d
}

// FstabLine is the /etc/fstab entry of a mount.
func FstabLine(source, path, fstype, options string) string {
	return strings.Join([]string{source, path, fstype, options, "0", "0"}, " ")
}

// EditFstab returns fstab with exactly one entry for path, want (or none
// when want is ""): the first entry for path is replaced, the others for
// the same mount point removed; comments and other entries are kept.
func EditFstab(fstab, path, want string) string { return EditKeyed(fstab, 1, path, want) }

// EditKeyed returns content with exactly one line whose field (counted
// from 0, blank-separated; comment lines aside) is key: want, in place of
// the first such line (or appended), the others removed; none when want
// is "".
func EditKeyed(content string, field int, key, want string) string {
	var out []string
	placed := false
	for _, l := range splitLines(content) {
		f := strings.Fields(l)
		if len(f) > field && !strings.HasPrefix(f[0], "#") && f[field] == key {
			if !placed && want != "" {
				out = append(out, want)
				placed = true
			}
			continue
		}
		out = append(out, l)
	}
	if !placed && want != "" {
		out = append(out, want)
	}
	return joinLines(out)
}

// fstabEntries returns the entries of fstab for path, normalised.
func fstabEntries(fstab, path string) []string {
	var out []string
	for _, l := range splitLines(fstab) {
		f := strings.Fields(l)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] == path {
			for len(f) < 6 {
				f = append(f, "0")
			}
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

func decideMount(t *Mount, p Probe) (*Decision, error) {
	if p.Has("content_too_large") {
		return nil, fmt.Errorf("/etc/fstab is larger than 256 KiB")
	}
	fstab, _, err := p.Content("content")
	if err != nil {
		return nil, err
	}
	want := FstabLine(t.Source, t.Path, t.Fstype, t.Options)
	if t.State == "absent" {
		want = ""
	}
	entries := fstabEntries(fstab, t.Path)
	mounted := p["mounted"]
	d := noop(t.Path + " is as declared")
	fstabChanged := !(len(entries) == 1 && entries[0] == want || len(entries) == 0 && want == "")
	if fstabChanged {
		newFstab := EditFstab(fstab, t.Path, want)
		c := ContentChange("fstab", "/etc/fstab", fstab, newFstab)
		c.Old, c.New = strings.Join(entries, " | "), want
		d.change(c)
		d.Action = apply.Update
		if len(entries) == 0 {
			d.Action = apply.Create
		}
		d.Stdin = []byte(newFstab)
		d.Script.Append(writeFileScript("/etc/fstab", resolvedOwnership{}, "", false))
	}
	switch t.State {
	case "mounted":
		if mounted == "" {
			d.attr("mounted", "false", "true")
			d.Script.Cmd("mkdir", "-p", "--", t.Path)
			d.Script.Cmd("mount", "--", t.Path)
		} else if fstabChanged {
			f := strings.Fields(mounted)
			if len(f) == 2 && (f[0] != t.Source || f[1] != t.Fstype) {
				d.attr("mounted", mounted, t.Source+" "+t.Fstype)
				d.Script.Cmd("umount", "--", t.Path)
				d.Script.Cmd("mount", "--", t.Path)
			} else {
				d.note("mounted", "remounted with the new options")
				d.Script.Cmd("mount", "-o", "remount", "--", t.Path)
			}
		}
	case "unmounted", "absent":
		if mounted != "" {
			d.attr("mounted", "true", "false")
			d.Script.Cmd("umount", "--", t.Path)
		}
	}
	return d, nil
}

// decideCommand decides command and shell: run unless a guard says the
// work is done.
func decideCommand(g Guards, p Probe, what, cmd string, stdin []byte) *Decision {
	switch {
	case g.Creates != "" && p.Has("creates"):
		return noop(g.Creates + " exists")
	case g.Unless != "" && p.Has("unless"):
		return noop("unless succeeded")
	}
	d := &Decision{Action: apply.Update, Attrs: []apply.AttrChange{{Name: what, New: cmd}}}
	if g.Creates == "" && g.Unless == "" {
		d.Attrs[0].Note = "runs every time (no creates= or unless=)"
	}
	d.Script.Add(cmd)
	d.Stdin = stdin
	return d
}
