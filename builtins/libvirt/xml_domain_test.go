package libvirt

import (
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/runtime"
)

// runningDomain is a running guest with 1024 of 2048 MiB and 2 of 4 vCPUs.
func runningDomain() *domainView {
	return &domainView{running: true, config: &libvirtxml.Domain{
		Memory:        &libvirtxml.DomainMemory{Value: 2048 << 10, Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: 1024 << 10, Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Value: 4, Current: 2},
	}}
}

func TestPlanDomainLiveNextBootOrReplace(t *testing.T) {
	for _, tc := range []struct {
		name        string
		spec        Domain
		wantAttrs   string
		wantReplace bool
	}{
		{"no change", Domain{VCPU: 2, MaxVCPU: 4, MemoryMiB: 1024, MaxMemoryMiB: 2048, Running: true}, `null`, false},
		{"memory within max is live", Domain{VCPU: 2, MaxVCPU: 4, MemoryMiB: 1536, MaxMemoryMiB: 2048, Running: true},
			`[{"name":"memory","old":"1024","new":"1536"}]`, false},
		{"vcpu within max is live", Domain{VCPU: 4, MaxVCPU: 4, MemoryMiB: 1024, MaxMemoryMiB: 2048, Running: true},
			`[{"name":"vcpu","old":"2","new":"4"}]`, false},
		{"above max is for the next boot", Domain{VCPU: 2, MaxVCPU: 4, MemoryMiB: 4096, Running: true},
			`[{"name":"max_memory","old":"2048","new":"4096","note":"takes effect at next boot"},{"name":"memory","old":"1024","new":"4096","note":"takes effect at next boot"}]`, false},
		{"replace_on_change replaces", Domain{VCPU: 2, MaxVCPU: 4, MemoryMiB: 1536, MaxMemoryMiB: 2048, Running: true, ReplaceOnChange: []string{"memory"}},
			`[{"name":"memory","old":"1024","new":"1536","forces_replace":true}]`, true},
		{"a NIC is attached with its MAC", Domain{VCPU: 2, MaxVCPU: 4, MemoryMiB: 1024, MaxMemoryMiB: 2048, Running: true,
			NICs: []DomainNIC{{Network: runtime.Address("libvirt.network.studio"), MAC: "02:00:00:00:00:01", Model: "virtio"}}},
			`[{"name":"nics","new":"02:00:00:00:00:01","note":"attached"}]`, false},
		{"a kernel to boot directly is for the next boot", Domain{VCPU: 2, MaxVCPU: 4, MemoryMiB: 1024, MaxMemoryMiB: 2048, Running: true,
			Kernel: "/boot/vmlinuz", Cmdline: "console=ttyS0"},
			`[{"name":"kernel","new":"/boot/vmlinuz","note":"takes effect at next boot"},{"name":"cmdline","new":"console=ttyS0","note":"takes effect at next boot"}]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := planDomain(runningDomain(), &tc.spec, nil)
			if got := mustJSON(t, ops.attrs); got != tc.wantAttrs || ops.replace != tc.wantReplace {
				t.Errorf("attrs %s, replace %v; want %s, %v", got, ops.replace, tc.wantAttrs, tc.wantReplace)
			}
		})
	}
}
