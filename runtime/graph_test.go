package runtime

import (
	"strings"
	"testing"
)

type testSpec struct{ kind string }

func (s testSpec) Kind() string { return s.kind }

func resources(edges map[string][]string) ([]*Resource, map[Address]*Resource) {
	index := map[Address]*Resource{}
	var rs []*Resource
	for name, deps := range edges {
		r := &Resource{Address: Address("t.r." + name), Name: name, Spec: testSpec{"t.r"}}
		for _, d := range deps {
			r.addDependency(Address("t.r." + d))
		}
		rs = append(rs, r)
		index[r.Address] = r
	}
	return rs, index
}

func names(rs []*Resource) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return strings.Join(out, " ")
}

func TestTopoSortIsStableAndRespectsDependencies(t *testing.T) {
	edges := map[string][]string{
		"pool": nil, "base": {"pool"}, "net": nil,
		"vol2": {"pool", "base"}, "vol1": {"pool", "base"},
		"dom1": {"vol1", "net"}, "dom2": {"vol2", "net"},
	}
	// Dependencies first; among the ready ones, the smaller address.
	const want = "net pool base vol1 dom1 vol2 dom2"
	// resources() builds its input from a map, in a new order each time.
	for i := 0; i < 20; i++ {
		rs, index := resources(edges)
		got, err := topoSort(rs, index)
		if err != nil {
			t.Fatal(err)
		}
		if names(got) != want {
			t.Fatalf("order = %s, want %s", names(got), want)
		}
	}
}

func TestTopoSortReportsCycle(t *testing.T) {
	rs, index := resources(map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": nil})
	_, err := topoSort(rs, index)
	if err == nil {
		t.Fatal("want a cycle error")
	}
	if !strings.Contains(err.Error(), "dependency cycle: t.r.a -> t.r.b -> t.r.c -> t.r.a") {
		t.Errorf("error = %v", err)
	}
}
