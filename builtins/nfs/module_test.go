package nfs

import (
	"strings"
	"testing"
)

func TestCheckClient(t *testing.T) {
	for _, c := range []struct{ client, err string }{
		{"172.16.0.0/24", ""},
		{"172.16.0.11", ""},
		{"fd00::/64", ""},
		{"*", ""},
		{"*.studio.lan", ""},
		{"vfx-dev-00?", ""},
		{"@render-farm", ""},
		{"172.16.0.1/24", `did you mean "172.16.0.0/24"`},
		{"172.16.0.0/33", "not a CIDR"},
		{"172.16.0.0/24(rw)", "options="},
		{"@", "want a CIDR"},
		{"vfx dev", "want a CIDR"},
	} {
		err := checkClient(c.client)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("checkClient(%q): %v", c.client, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("checkClient(%q) = %v, want an error containing %q", c.client, err, c.err)
		}
	}
}

func TestCheckExportOptions(t *testing.T) {
	for _, c := range []struct{ options, err string }{
		{"rw,sync,no_subtree_check", ""},
		{"ro,async,all_squash,anonuid=1000,fsid=0", ""},
		{"sec=krb5p", ""},
		{"rw, sync", `" sync" is not an export option`},
		{"rw,,sync", `"" is not an export option`},
		{"rw,ro", "rw and ro exclude each other"},
		{"sync,async", "sync and async"},
		{"root_squash,no_root_squash", "exclude each other"},
	} {
		err := checkExportOptions(c.options)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("checkExportOptions(%q): %v", c.options, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("checkExportOptions(%q) = %v, want an error containing %q", c.options, err, c.err)
		}
	}
}

func TestCheckAllowed(t *testing.T) {
	for _, c := range []struct {
		clients []string
		addr    string
		ok      bool
	}{
		{[]string{"172.16.0.0/24"}, "172.16.0.11", true},
		{[]string{"172.16.1.0/24", "172.16.0.11"}, "172.16.0.11", true},
		{[]string{"172.16.1.0/24"}, "172.16.0.11", false},
		{[]string{"172.16.1.0/24", "*.studio"}, "172.16.0.11", true}, // names resolve when applied
		{[]string{"172.16.1.0/24"}, "vfx-dev-001", true},             // so do client names
	} {
		e := &Export{Path: "/srv/nfs/vfx", Clients: c.clients}
		if err := checkAllowed(e, c.addr); (err == nil) != c.ok {
			t.Errorf("checkAllowed(%v, %s) = %v, want ok=%v", c.clients, c.addr, err, c.ok)
		}
	}
}
