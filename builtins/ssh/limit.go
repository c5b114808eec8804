package ssh

import (
	"fmt"
	"sort"
	"strings"

	"github.com/studiorun/studiorun/runtime"
)

// Limit restricts a plan to some hosts, as --limit does: each name is a
// host's name or a group of an ssh.inventory. The tasks and hosts of the
// others are left out; resources that are not on a host (libvirt's, an
// image) stay.
func Limit(p *runtime.Plan, names []string) (*runtime.Plan, error) {
	if len(names) == 0 {
		return p, nil
	}
	hosts := map[runtime.Address]string{} // by address: name
	groups := map[string][]runtime.Address{}
	for _, r := range p.Resources {
		switch s := r.Spec.(type) {
		case *HostSpec:
			hosts[r.Address] = r.Name
		case *Inventory:
			for g, members := range s.Groups {
				groups[g] = append(groups[g], members...)
			}
		}
	}
	chosen := map[runtime.Address]bool{}
	for _, n := range names {
		if members, ok := groups[n]; ok {
			for _, m := range members {
				chosen[m] = true
			}
			continue
		}
		addr := runtime.Address("ssh.host." + n)
		if _, ok := hosts[addr]; !ok {
			return nil, fmt.Errorf("--limit %s: no host or inventory group of that name (groups: %s)", n, strings.Join(sortedKeys(groups), ", "))
		}
		chosen[addr] = true
	}
	return p.Only(func(r *runtime.Resource) bool {
		switch s := r.Spec.(type) {
		case *HostSpec:
			return chosen[r.Address]
		case Task:
			return chosen[s.TaskHost()]
		}
		return true
	}), nil
}

func sortedKeys(m map[string][]runtime.Address) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return []string{"none"}
	}
	return keys
}
