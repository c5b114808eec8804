package runtime

import (
	"testing"

	"go.starlark.net/starlark"
)

func TestMiBUnpack(t *testing.T) {
	for _, tc := range []struct {
		in      starlark.Value
		want    MiB
		wantErr string
	}{
		{starlark.MakeInt(1024), 1024, ""},
		{starlark.String("1GiB"), 1024, ""},
		{starlark.String("512MiB"), 512, ""},
		{starlark.String("2TiB"), 2 << 20, ""},
		{starlark.String("2048KiB"), 2, ""},
		{starlark.String("1000KiB"), 0, `"1000KiB" is not a whole number of MiB in range`},
		{starlark.String("1 gigabyte"), 0, `"1 gigabyte": want a number of MiB or a size such as "512MiB" or "1GiB"`},
		{starlark.String("1GB"), 0, `"1GB": want a number of MiB or a size such as "512MiB" or "1GiB"`},
		{starlark.MakeInt(0), 0, "0 MiB is out of range: want at least 1"},
		{starlark.Float(1.5), 0, `got float, want a number of MiB or a size such as "1GiB"`},
	} {
		var got MiB
		err := got.Unpack(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Unpack(%s) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Unpack(%s) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestModeUnpack(t *testing.T) {
	for _, tc := range []struct {
		in      starlark.Value
		want    Mode
		wantErr string
	}{
		{starlark.MakeInt(0o600), 0o600, ""},
		{starlark.MakeInt(0o440), 0o440, ""},
		{starlark.MakeInt(0o644), 0o644, ""}, // 420 in decimal: not a common mode's digits
		{starlark.MakeInt(0o4755), 0o4755, ""},
		{starlark.String("0600"), 0o600, ""},
		{starlark.String("0o755"), 0o755, ""},
		{starlark.MakeInt(600), 0, `mode 600 is decimal (0o1130 in octal, with the sticky bit set); write 0o600 or "0600"`},
		{starlark.MakeInt(755), 0, `mode 755 is decimal (0o1363 in octal, with the sticky bit set); write 0o755 or "0755"`},
		{starlark.MakeInt(440), 0, `mode 440 is decimal (0o670 in octal); write 0o440 or "0440"`},
		{starlark.MakeInt(0o17777), 0, "mode 8191 is out of range: want 0o000 to 0o7777"},
		{starlark.String("rw-r--r--"), 0, `mode "rw-r--r--": want an octal mode such as "0640" or 0o640`},
		{starlark.String("0800"), 0, `mode "0800": want an octal mode such as "0640" or 0o640`},
	} {
		var got Mode
		err := got.Unpack(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Unpack(%s) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Unpack(%s) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSubnetHosts(t *testing.T) {
	var s Subnet
	if err := s.Unpack(starlark.String("172.16.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if got := s.Capacity(); got != 254 {
		t.Errorf("Capacity() = %d, want 254", got)
	}
	if ip, ok := s.Host(10); !ok || ip.String() != "172.16.0.10" {
		t.Errorf("Host(10) = %v, %v", ip, ok)
	}
	if _, ok := s.Host(255); ok {
		t.Error("Host(255) in a /24 should not fit")
	}
	if got := s.Broadcast().String(); got != "172.16.0.255" {
		t.Errorf("Broadcast() = %s", got)
	}
	var wide Subnet
	if err := wide.Unpack(starlark.String("172.16.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if ip, _ := wide.Host(1010); ip.String() != "172.16.3.242" {
		t.Errorf("Host(1010) in /16 = %s", ip)
	}
}
