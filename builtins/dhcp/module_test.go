package dhcp

import (
	"strings"
	"testing"

	"go.starlark.net/starlark"
)

func call(t *testing.T, fn *starlark.Builtin, args ...starlark.Value) (starlark.Value, error) {
	t.Helper()
	return starlark.Call(&starlark.Thread{}, fn, args, nil)
}

func TestLAA(t *testing.T) {
	laaFn := Module.Members["laa"].(*starlark.Builtin)
	for _, tc := range []struct {
		index  int
		prefix string
		want   string
	}{
		{1, "", "02:00:00:00:00:01"},
		{255, "", "02:00:00:00:00:FF"},
		{256, "", "02:00:00:00:01:00"},
		{1000, "", "02:00:00:00:03:E8"},
		{1, "02:00:00:01", "02:00:00:01:00:01"},
		{16777215, "", "02:00:00:FF:FF:FF"},
		{5, "0a", "0A:00:00:00:00:05"},
	} {
		args := []starlark.Value{starlark.MakeInt(tc.index)}
		if tc.prefix != "" {
			args = append(args, starlark.String(tc.prefix))
		}
		got, err := call(t, laaFn, args...)
		if err != nil || got != starlark.String(tc.want) {
			t.Errorf("laa(%d, %q) = %v, %v; want %s", tc.index, tc.prefix, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		index  int
		prefix string
		want   string
	}{
		{0, "02:00:00:00:00", "index 0 out of range: want 1 to 16777215"},
		{-1, "02:00:00:00:00", "index -1 out of range"},
		{16777216, "02:00:00:00:00", "index 16777216 out of range"},
		{256, "02:00:00:FF:FF", "runs past the prefix's first three octets"},
		{1, "01:00", "is not a locally administered unicast address"},
		{1, "02:zz", `"zz" is not a hex octet`},
		{1, "02:00:00:00:00:00", "want one to five hex octets"},
	} {
		_, err := call(t, laaFn, starlark.MakeInt(tc.index), starlark.String(tc.prefix))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("laa(%d, %q) error = %v, want %q", tc.index, tc.prefix, err, tc.want)
		}
	}
}

func TestIPAndCapacity(t *testing.T) {
	ipFn := Module.Members["ip"].(*starlark.Builtin)
	capFn := Module.Members["capacity"].(*starlark.Builtin)
	if got, err := call(t, ipFn, starlark.String("172.16.0.0/24"), starlark.MakeInt(10)); err != nil || got != starlark.String("172.16.0.10") {
		t.Errorf("ip(/24, 10) = %v, %v", got, err)
	}
	if got, err := call(t, ipFn, starlark.String("172.16.0.0/16"), starlark.MakeInt(300)); err != nil || got != starlark.String("172.16.1.44") {
		t.Errorf("ip(/16, 300) = %v, %v", got, err)
	}
	if _, err := call(t, ipFn, starlark.String("172.16.0.0/24"), starlark.MakeInt(0)); err == nil {
		t.Error("ip(/24, 0) should fail: 0 is the network address")
	}
	if got, err := call(t, capFn, starlark.String("172.16.0.0/24")); err != nil || got != starlark.MakeInt(254) {
		t.Errorf("capacity(/24) = %v, %v", got, err)
	}
}
