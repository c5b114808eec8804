package qemu

import (
	"net"
	"strings"
	"testing"
)

func TestQemuArgs(t *testing.T) {
	base := launchConfig{
		Name: "soe", Accel: "tcg", Memory: 1024, CPUs: 2, Disk: "/b/disk.qcow2",
		SerialLog: "/b/serial.log", QMPSocket: "/t/qmp.sock", Net: defaultUserNet, SSHPort: 2222,
	}
	for _, tc := range []struct {
		name string
		edit func(*launchConfig)
		want string
	}{
		{"disk under TCG", func(*launchConfig) {},
			"-name soe -machine pc,accel=tcg -m 1024 -smp 2 -display none -serial file:/b/serial.log" +
				" -qmp unix:/t/qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:2222-:22" +
				" -device virtio-net-pci,netdev=net0" +
				" -drive file=/b/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap -boot order=c"},
		{"ISO under KVM boots the CD once", func(c *launchConfig) { c.Accel = "kvm"; c.CDROM = "/c/x.iso" },
			"-name soe -machine pc,accel=kvm -cpu host -m 1024 -smp 2 -display none -serial file:/b/serial.log" +
				" -qmp unix:/t/qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:2222-:22" +
				" -device virtio-net-pci,netdev=net0" +
				" -drive file=/b/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" +
				" -drive file=/c/x.iso,media=cdrom,readonly=on -boot order=c,once=d"},
		{"another user network moves the host address", func(c *launchConfig) { c.Net = mustUserNet("192.168.77.0/24") },
			"-name soe -machine pc,accel=tcg -m 1024 -smp 2 -display none -serial file:/b/serial.log" +
				" -qmp unix:/t/qmp.sock,server=on,wait=off" +
				" -netdev user,id=net0,net=192.168.77.0/24,host=192.168.77.2,hostfwd=tcp:127.0.0.1:2222-:22" +
				" -device virtio-net-pci,netdev=net0" +
				" -drive file=/b/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap -boot order=c"},
		{"a libvirt network's bridge, with a MAC", func(c *launchConfig) { c.Bridge = "virbr7"; c.MAC = "02:00:00:aa:bb:cc" },
			"-name soe -machine pc,accel=tcg -m 1024 -smp 2 -display none -serial file:/b/serial.log" +
				" -qmp unix:/t/qmp.sock,server=on,wait=off" +
				" -netdev bridge,id=net0,br=virbr7" +
				" -device virtio-net-pci,netdev=net0,mac=02:00:00:aa:bb:cc" +
				" -drive file=/b/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap -boot order=c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			if got := strings.Join(qemuArgs(c), " "); got != tc.want {
				t.Errorf("qemuArgs:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestQemuImgArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []string
		want string
	}{
		{"empty disk", createArgs("/b/disk.qcow2", 30000, "", ""), "create -q -f qcow2 /b/disk.qcow2 30000M"},
		{"overlay resized", createArgs("/b/disk.qcow2", 30000, "/i/base.qcow2", "qcow2"), "create -q -f qcow2 -b /i/base.qcow2 -F qcow2 /b/disk.qcow2 30000M"},
		{"overlay on raw at its size", createArgs("/b/disk.qcow2", 0, "/i/base.img", "raw"), "create -q -f qcow2 -b /i/base.img -F raw /b/disk.qcow2"},
		{"convert", convertArgs("/b/disk.qcow2", "/b/out.qcow2", "qcow2", false), "convert -p -O qcow2 /b/disk.qcow2 /b/out.qcow2"},
		{"convert compressed", convertArgs("/b/disk.qcow2", "/b/out.qcow2", "qcow2", true), "convert -p -O qcow2 -c /b/disk.qcow2 /b/out.qcow2"},
		{"convert raw", convertArgs("/b/disk.qcow2", "/b/out.raw", "raw", false), "convert -p -O raw /b/disk.qcow2 /b/out.raw"},
	} {
		if got := strings.Join(tc.got, " "); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestParseImgProgress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"    (0.00/100%)\r", 0, true},
		{"    (12.34/100%)\r    (56.78/100%)\r", 5678, true},
		{"    (100.00/100%)\n", 10000, true},
		{"", 0, false},
		{"no progress", 0, false},
	} {
		got, ok := parseImgProgress(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseImgProgress(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSendKeyCommand(t *testing.T) {
	got := string(sendKeyCommand([]string{"shift", "a"}))
	want := `{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"shift"},{"type":"qcode","data":"a"}],"hold-time":5}}`
	if got != want {
		t.Errorf("sendKeyCommand:\n got %s\nwant %s", got, want)
	}
}

func TestSealScript(t *testing.T) {
	root := sealScript("root", "AAAAC3Nz")
	for _, want := range []string{
		": > /etc/machine-id\n", "rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*_key ",
		"/var/lib/dhcp/*.leases", "f=~root/.ssh/authorized_keys\n", "grep -vF 'AAAAC3Nz' \"$f\"",
	} {
		if !strings.Contains(root, want) {
			t.Errorf("sealScript(root) lacks %q:\n%s", want, root)
		}
	}
	if strings.HasPrefix(root, "sudo") {
		t.Errorf("root's seal runs through sudo")
	}
	ops := sealScript("ops", "")
	if !strings.HasPrefix(ops, "sudo -n sh -c '") || strings.Contains(ops, "authorized_keys") {
		t.Errorf("sealScript(ops, no key):\n%s", ops)
	}
	if got := authorizedKeyBlob("ssh-ed25519 AAAAC3Nz builder@x\n"); got != "AAAAC3Nz" {
		t.Errorf("authorizedKeyBlob = %q", got)
	}
}

func TestRandomLAA(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		mac, err := randomLAA()
		if err != nil {
			t.Fatal(err)
		}
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 || hw[0] != 0x02 || seen[mac] {
			t.Fatalf("randomLAA() = %q (%v): want a new unicast, locally administered MAC", mac, err)
		}
		seen[mac] = true
	}
}
