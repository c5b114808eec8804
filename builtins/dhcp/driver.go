package dhcp

// The dhcp driver writes dhcp.hosts_file resources and the reservations
// on them: a dnsmasq dhcp-hosts file ("<mac>,<ip>,<hostname>" a line, for
// dnsmasq's --dhcp-hostsfile) and, beside it at "<path>.hosts", a hosts
// file ("<ip> <hostname>" a line, for --addn-hosts), for a DHCP server
// that studiorun does not run. Both are rewritten atomically (temporary
// file in the same directory, fsync, rename), lines sorted. Reservations
// on a libvirt.network are the libvirt driver's.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// Driver implements apply.Driver for dhcp.hosts_file and the reservations
// on one. It is safe for concurrent use.
type Driver struct {
	root string

	mu    sync.Mutex
	files map[runtime.Address]string // hosts file address -> absolute path
	locks map[string]*sync.Mutex     // one writer per file
}

var _ apply.Driver = (*Driver)(nil)

// NewDriver returns the dhcp driver; root is the project root, against
// which relative paths are resolved.
func NewDriver(root string) *Driver {
	return &Driver{root: root, files: map[runtime.Address]string{}, locks: map[string]*sync.Mutex{}}
}

// SetPlan implements apply.Driver: a reservation finds its hosts file in
// the plan, whatever the order of the calls to Diff.
func (d *Driver) SetPlan(p *runtime.Plan) {
	for _, r := range p.Resources {
		if h, ok := r.Spec.(*HostsFile); ok {
			d.remember(r.Address, h)
		}
	}
}

// Close implements apply.Driver: there is nothing to release.
func (d *Driver) Close() error { return nil }

// HostsPath returns the path of the hosts file written beside a
// dhcp-hosts file.
func HostsPath(dhcpHosts string) string { return dhcpHosts + ".hosts" }

func (d *Driver) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.root, filepath.FromSlash(p))
}

func (d *Driver) remember(addr runtime.Address, h *HostsFile) string {
	p := d.abs(h.Path)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files[addr] = p
	return p
}

func (d *Driver) lock(p string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.locks[p]
	if !ok {
		m = &sync.Mutex{}
		d.locks[p] = m
	}
	return m
}

// fileOf returns the path of the hosts file a reservation is on.
func (d *Driver) fileOf(r *runtime.Resource, res *Reservation) (string, error) {
	d.mu.Lock()
	p, ok := d.files[res.Network]
	d.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%s: %s, the hosts file it is on, is not in the plan", r.Address, res.Network)
	}
	return p, nil
}

// Diff implements apply.Driver.
func (d *Driver) Diff(ctx context.Context, r *runtime.Resource, owned *apply.Entry) (*apply.Change, error) {
	switch spec := r.Spec.(type) {
	case *HostsFile:
		p := d.remember(r.Address, spec)
		_, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &apply.Change{Address: r.Address, Action: apply.Create}, nil
		case err != nil:
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		case owned == nil:
			return nil, fmt.Errorf("%s: a file %s exists that studiorun did not create; remove it or choose another path", r.Address, p)
		}
		return &apply.Change{Address: r.Address, Action: apply.NoOp}, nil
	case *Reservation:
		p, err := d.fileOf(r, spec)
		if err != nil {
			return nil, err
		}
		lines, err := readLines(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
		hosts, err := readLines(HostsPath(p))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
		c := &apply.Change{Address: r.Address, Action: apply.NoOp}
		old, found := lineOf(lines, string(spec.MAC))
		switch {
		case !found:
			c.Action = apply.Create
		case old != dhcpLine(spec):
			c.Action = apply.Update
			c.Attrs = []apply.AttrChange{{Name: "line", Old: old, New: dhcpLine(spec)}}
		case !contains(hosts, hostsLine(spec)):
			c.Action = apply.Update
			c.Attrs = []apply.AttrChange{{Name: "hosts", New: hostsLine(spec), Note: "hosts file entry"}}
		}
		return c, nil
	}
	return nil, fmt.Errorf("%s: the dhcp driver does not handle %s", r.Address, r.Kind())
}

// Apply implements apply.Driver.
func (d *Driver) Apply(ctx context.Context, r *runtime.Resource, c *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	e := &apply.Entry{Address: r.Address, Kind: r.Kind(), Name: r.Name}
	switch spec := r.Spec.(type) {
	case *HostsFile:
		p := d.remember(r.Address, spec)
		mu := d.lock(p)
		mu.Lock()
		defer mu.Unlock()
		for _, f := range []string{p, HostsPath(p)} {
			if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
				if err := writeLines(f, nil); err != nil {
					return nil, fmt.Errorf("%s: %w", r.Address, err)
				}
			}
		}
		e.ID = p
		return e, nil
	case *Reservation:
		p, err := d.fileOf(r, spec)
		if err != nil {
			return nil, err
		}
		mu := d.lock(p)
		mu.Lock()
		defer mu.Unlock()
		if err := d.rewrite(p, string(spec.MAC), spec.Hostname, spec); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Address, err)
		}
		e.ID = p + "|" + string(spec.MAC)
		return e, nil
	}
	return nil, fmt.Errorf("%s: the dhcp driver does not handle %s", r.Address, r.Kind())
}

// Delete implements apply.Driver.
func (d *Driver) Delete(ctx context.Context, e *apply.Entry, rep apply.Reporter) error {
	switch e.Kind {
	case "dhcp.hosts_file":
		p := e.ID
		if p == "" {
			var spec struct {
				Path string `json:"path"`
			}
			if err := json.Unmarshal(e.Spec, &spec); err != nil || spec.Path == "" {
				return nil // never written
			}
			p = d.abs(spec.Path)
		}
		for _, f := range []string{p, HostsPath(p)} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %w", e.Address, err)
			}
		}
		return nil
	case "dhcp.reservation":
		p, mac, ok := strings.Cut(e.ID, "|")
		if !ok {
			return nil // never written
		}
		var spec struct {
			Hostname string `json:"hostname"`
		}
		_ = json.Unmarshal(e.Spec, &spec)
		mu := d.lock(p)
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil // gone with its file
		}
		if err := d.rewrite(p, mac, spec.Hostname, nil); err != nil {
			return fmt.Errorf("%s: %w", e.Address, err)
		}
		return nil
	}
	return fmt.Errorf("%s: the dhcp driver does not handle %s", e.Address, e.Kind)
}

// rewrite removes the lines of a MAC (and, in the hosts file, of its
// address and of hostname) and adds res's, if any, in both files.
func (d *Driver) rewrite(p, mac, hostname string, res *Reservation) error {
	lines, err := readLines(p)
	if err != nil {
		return err
	}
	hosts, err := readLines(HostsPath(p))
	if err != nil {
		return err
	}
	oldIP := ""
	if old, ok := lineOf(lines, mac); ok {
		if f := strings.Split(old, ","); len(f) >= 2 {
			oldIP = f[1]
		}
	}
	lines = filter(lines, func(l string) bool { return !strings.EqualFold(strings.SplitN(l, ",", 2)[0], mac) })
	hosts = filter(hosts, func(l string) bool {
		f := strings.Fields(l)
		return len(f) < 2 || (f[0] != oldIP && f[1] != hostname)
	})
	if res != nil {
		lines = append(lines, dhcpLine(res))
		hosts = append(hosts, hostsLine(res))
	}
	if err := writeLines(p, lines); err != nil {
		return err
	}
	return writeLines(HostsPath(p), hosts)
}

func dhcpLine(r *Reservation) string  { return fmt.Sprintf("%s,%s,%s", r.MAC, r.IP, r.Hostname) }
func hostsLine(r *Reservation) string { return fmt.Sprintf("%s %s", r.IP, r.Hostname) }

// lineOf returns the dhcp-hosts line of a MAC.
func lineOf(lines []string, mac string) (string, bool) {
	for _, l := range lines {
		if strings.EqualFold(strings.SplitN(l, ",", 2)[0], mac) {
			return l, true
		}
	}
	return "", false
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func filter(lines []string, keep func(string) bool) []string {
	out := lines[:0]
	for _, l := range lines {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// readLines returns a file's non-empty, non-comment lines; a missing file
// has none.
func readLines(p string) ([]string, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

// writeLines replaces a file atomically with the sorted lines under a
// header.
func writeLines(p string, lines []string) error {
	sorted := append([]string(nil), lines...)
	sort.Strings(sorted)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# written by studiorun: changes here are overwritten\n")
	for _, l := range sorted {
		b.WriteString(l + "\n")
	}
	return apply.WriteFileAtomic(p, []byte(b.String()), 0o644)
}
