package libvirt

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/runtime"
)

func TestUnpackSizeAcceptsMiBAndUnits(t *testing.T) {
	for _, tc := range []struct {
		in      starlark.Value
		want    runtime.MiB
		wantErr string
	}{
		{starlark.MakeInt(1024), 1024, ""},
		{starlark.String("1GiB"), 1024, ""},
		{starlark.String("512MiB"), 512, ""},
		{starlark.String("1 gigabyte"), 0, `memory "1 gigabyte": want a number of MiB or a size such as "512MiB" or "1GiB"`},
		{starlark.MakeInt(0), 0, "memory 0 MiB is out of range: want at least 1"},
		{starlark.Float(1.5), 0, "memory: got float, want a number of MiB"},
	} {
		got, err := unpackSize("memory", tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("unpackSize(%s): error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("unpackSize(%s) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckOneOfListsTheChoices(t *testing.T) {
	for _, tc := range []struct {
		got     string
		allowed []string
		wantErr string
	}{
		{"scsi", diskBuses, ""},
		{"ide", diskBuses, `bus "ide": want "virtio", "scsi" or "sata"`},
		{"lvm", []string{"dir"}, `bus "lvm": want "dir"`},
	} {
		err := checkOneOf("bus", tc.got, tc.allowed...)
		if got := errString(err); got != tc.wantErr {
			t.Errorf("checkOneOf(%q) = %q, want %q", tc.got, got, tc.wantErr)
		}
	}
}

func TestCheckBridgeNameFollowsLinuxDeviceNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"br0":              true,
		"virbr-studio":     true,
		"br_lan.10":        true,
		"a23456789012345":  true,
		"a234567890123456": false,
		"":                 false,
		"..":               false,
		"br 0":             false,
		"br/0":             false,
	} {
		if err := checkBridgeName(name); (err == nil) != ok {
			t.Errorf("checkBridgeName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestCheckHostPathWantsAbsoluteCleanPaths(t *testing.T) {
	for p, ok := range map[string]bool{
		"/var/lib/libvirt/images/studio": true,
		"images/studio":                  false,
		"/var/lib/../images":             false,
		"/var/lib/libvirt/images/":       false,
		"/":                              false,
	} {
		if err := checkHostPath(p); (err == nil) != ok {
			t.Errorf("checkHostPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestUnpackRangeStaysInsideTheSubnet(t *testing.T) {
	subnet := runtime.Subnet(netip.MustParsePrefix("172.16.0.0/24"))
	gateway := netip.MustParseAddr("172.16.0.1")
	pair := func(a, b string) starlark.Value { return starlark.Tuple{starlark.String(a), starlark.String(b)} }
	for _, tc := range []struct {
		in      starlark.Value
		wantErr string
	}{
		{pair("172.16.0.2", "172.16.0.9"), ""},
		{starlark.NewList([]starlark.Value{starlark.String("172.16.0.2"), starlark.String("172.16.0.2")}), ""},
		{pair("172.16.0.2", "172.16.1.9"), "172.16.1.9 is outside subnet 172.16.0.0/24"},
		{pair("172.16.0.0", "172.16.0.9"), "172.16.0.0 is the network address of 172.16.0.0/24"},
		{pair("172.16.0.2", "172.16.0.255"), "172.16.0.255 is the broadcast address of 172.16.0.0/24"},
		{pair("172.16.0.9", "172.16.0.2"), "start 172.16.0.9 is after end 172.16.0.2"},
		{pair("172.16.0.1", "172.16.0.9"), "172.16.0.1 to 172.16.0.9 contains the gateway 172.16.0.1"},
		{pair("172.16.0.2", "nine"), `IP address "nine": want an IPv4 address such as "172.16.0.10"`},
		{starlark.String("172.16.0.2-172.16.0.9"), `got "172.16.0.2-172.16.0.9", want a (start, end) pair`},
		{starlark.Tuple{starlark.String("172.16.0.2")}, `got ("172.16.0.2",), want a (start, end) pair`},
	} {
		r, err := unpackRange(subnet, gateway, tc.in)
		if tc.wantErr == "" {
			if err != nil || r == nil {
				t.Errorf("unpackRange(%s) = %v, %v", tc.in, r, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
			t.Errorf("unpackRange(%s): error %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestUnpackGatewayDefaultsToTheFirstHost(t *testing.T) {
	spec := Network{Subnet: runtime.Subnet(netip.MustParsePrefix("10.1.0.0/16"))}
	if err := unpackGateway(&spec, starlark.None); err != nil || spec.Gateway.String() != "10.1.0.1" {
		t.Errorf("default gateway = %s, %v; want 10.1.0.1", spec.Gateway, err)
	}
	if err := unpackGateway(&spec, starlark.String("10.1.255.254")); err != nil || spec.Gateway.String() != "10.1.255.254" {
		t.Errorf("gateway = %s, %v; want 10.1.255.254", spec.Gateway, err)
	}
	err := unpackGateway(&spec, starlark.String("10.1.255.255"))
	if got, want := errString(err), "gateway 10.1.255.255 is the broadcast address of 10.1.0.0/16"; got != want {
		t.Errorf("broadcast gateway: %q, want %q", got, want)
	}
}

func TestUnpackReplaceOnChangeAcceptsArgumentNames(t *testing.T) {
	list := func(items ...string) starlark.Value {
		vals := make([]starlark.Value, len(items))
		for i, s := range items {
			vals[i] = starlark.String(s)
		}
		return starlark.NewList(vals)
	}
	for _, tc := range []struct {
		in      starlark.Value
		want    []string
		wantErr string
	}{
		{list(), []string{}, ""},
		{list("memory", "vcpu"), []string{"memory", "vcpu"}, ""},
		{list("memory_mib"), nil, `argument "memory_mib": want "disks", "max_memory", "max_vcpu", "memory", "nics", "serial_console" or "vcpu"`},
		{list("disks", "disks"), nil, `"disks" is listed twice`},
		{starlark.String("memory"), nil, "got string, want a list of argument names"},
		{starlark.NewList([]starlark.Value{starlark.MakeInt(1)}), nil, "got int, want an argument name"},
	} {
		got, err := unpackReplaceOnChange(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("unpackReplaceOnChange(%s): error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("unpackReplaceOnChange(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestUnpackResourcesBoundsCPUsAndMemory(t *testing.T) {
	none := starlark.Value(starlark.None)
	for _, tc := range []struct {
		vcpu                       int
		memory, maxVCPU, maxMemory starlark.Value
		wantErr                    string
	}{
		{2, starlark.MakeInt(1024), none, none, ""},
		{2, starlark.String("2GiB"), starlark.MakeInt(4), starlark.String("4GiB"), ""},
		{0, starlark.MakeInt(1024), none, none, "vcpu 0: want 1 to 4096"},
		{4, starlark.MakeInt(1024), starlark.MakeInt(2), none, "vcpu 4 is more than max_vcpu 2"},
		{4, starlark.MakeInt(1024), starlark.MakeInt(5000), none, "max_vcpu 5000: want at most 4096"},
		{1, starlark.MakeInt(2048), none, starlark.MakeInt(1024), "max_memory 1024 MiB is less than memory 2048 MiB"},
		{1, starlark.String("1.5GiB"), none, none, `memory "1.5GiB": want a number of MiB`},
	} {
		spec := Domain{VCPU: tc.vcpu}
		err := unpackResources(&spec, tc.memory, tc.maxVCPU, tc.maxMemory)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)) {
			t.Errorf("unpackResources(vcpu=%d, memory=%s, max_vcpu=%s, max_memory=%s): %v, want %q",
				tc.vcpu, tc.memory, tc.maxVCPU, tc.maxMemory, err, tc.wantErr)
		}
	}
}

func TestQuoteList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"dir"}, `"dir"`},
		{[]string{"qcow2", "raw"}, `"qcow2" or "raw"`},
		{[]string{"nat", "route", "isolated"}, `"nat", "route" or "isolated"`},
	} {
		if got := quoteList(tc.in); got != tc.want {
			t.Errorf("quoteList(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
