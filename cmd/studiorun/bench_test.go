package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The apply benchmarks of issue 3, on test:///default (make bench):
//
//   - BenchmarkUp50Domains: up of 50 hosts (an overlay, a domain and a
//     DHCP reservation each, with their pool, base volume and network)
//     from nothing, with --parallel 1 and --parallel 8; only the up is
//     timed (each iteration downs what it made, untimed). The parallel=8
//     line also reports parallel8/parallel1, the ratio of its time per up
//     to that of the parallel=1 line (issue 3 asks for at most 0.25).
//   - BenchmarkNoopUpStudio3: a no-op up of scripts/studio.star with
//     dev_host_count=3, after one real up (issue 3: under 1 s).
//
// The verbs run in this process, through run() as main() calls it, so
// that -cpuprofile sees them; a separate process would add its start (a
// few ms) to each.

// requireLibvirtdB is requireLibvirtd for a benchmark.
func requireLibvirtdB(b *testing.B) {
	b.Helper()
	if _, err := os.Stat("/run/libvirt/libvirt-sock"); err == nil {
		return
	}
	if os.Getenv("STUDIORUN_REQUIRE_INTEGRATION") == "1" {
		b.Fatal("libvirtd is not running (no /run/libvirt/libvirt-sock) and STUDIORUN_REQUIRE_INTEGRATION=1")
	}
	b.Skip("libvirtd is not running (no /run/libvirt/libvirt-sock)")
}

// runVerb runs studiorun in this process and fails on a non-zero exit.
func runVerb(b *testing.B, args ...string) string {
	b.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"studiorun"}, args...), &stdout, &stderr); code != 0 {
		b.Fatalf("studiorun %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String()
}

// processCPU returns the CPU time (user and system) this process used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// libvirtdCPU returns the CPU time libvirtd used, from /proc (in clock
// ticks of 10 ms), or -1h when it cannot be read.
func libvirtdCPU() time.Duration {
	pid, err := os.ReadFile("/run/libvirtd.pid")
	if err != nil {
		return -time.Hour
	}
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
	if err != nil {
		return -time.Hour
	}
	// Fields after the command name: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return -time.Hour
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -time.Hour
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// benchUpParallel1 is the time per up of the parallel=1 line, for the
// ratio of the parallel=8 line.
var benchUpParallel1 time.Duration

func BenchmarkUp50Domains(b *testing.B) {
	requireLibvirtdB(b)
	connectTestDriver(b)
	dir := tempProject(b, "bench_fleet.star")
	script := filepath.Join(dir, "bench_fleet.star")
	flags := []string{"--libvirt-uri", "test:///default", "--var", "host_count=50"}
	b.Cleanup(func() {
		var out bytes.Buffer
		run(append([]string{"studiorun", script, "down", "--yes"}, flags...), &out, &out)
	})
	for _, parallel := range []int{1, 8} {
		b.Run("parallel="+strconv.Itoa(parallel), func(b *testing.B) {
			var total, selfCPU, daemonCPU time.Duration
			for i := 0; i < b.N; i++ {
				self0, daemon0 := processCPU(), libvirtdCPU()
				start := time.Now()
				out := runVerb(b, append([]string{script, "up", "--yes", "--parallel", strconv.Itoa(parallel)}, flags...)...)
				total += time.Since(start)
				b.StopTimer()
				selfCPU += processCPU() - self0
				daemonCPU += libvirtdCPU() - daemon0
				if !strings.Contains(out, "153 created") {
					b.Fatalf("up did not create the 153 resources of 50 hosts:\n%s", out)
				}
				runVerb(b, append([]string{script, "down", "--yes"}, flags...)...)
				b.StartTimer()
			}
			perUp := total / time.Duration(b.N)
			// Where the time goes: CPU time of this process (studiorun) and
			// of libvirtd per up, against the wall time.
			b.ReportMetric(float64(selfCPU.Milliseconds())/float64(b.N), "studiorun-cpu-ms/op")
			if libvirtdCPU() >= 0 {
				b.ReportMetric(float64(daemonCPU.Milliseconds())/float64(b.N), "libvirtd-cpu-ms/op")
			}
			switch parallel {
			case 1:
				benchUpParallel1 = perUp
			case 8:
				if benchUpParallel1 > 0 {
					b.ReportMetric(float64(perUp)/float64(benchUpParallel1), "parallel8/parallel1")
				}
			}
		})
	}
}

func BenchmarkNoopUpStudio3(b *testing.B) {
	requireLibvirtdB(b)
	connectTestDriver(b)
	// studio.star and its host list in a project of their own, so that
	// the state does not land in the repository.
	dir := b.TempDir()
	for _, d := range []string{".studiorun", "scripts", "images"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range []string{"studio.star", "studio_hosts.star"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "scripts", s))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "scripts", s), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	images := filepath.Join(dir, "images")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", filepath.Join(images, "vfx-studio-soe_0.1.0.qcow2"), "64M").CombinedOutput(); err != nil {
		b.Fatalf("qemu-img: %v\n%s", err, out)
	}
	script := filepath.Join(dir, "scripts", "studio.star")
	flags := []string{"--libvirt-uri", "test:///default", "--var", "image_root=" + images, "--var", "dev_host_count=3"}
	b.Cleanup(func() {
		var out bytes.Buffer
		run(append([]string{"studiorun", script, "down", "--yes"}, flags...), &out, &out)
	})
	runVerb(b, append([]string{script, "up", "--yes"}, flags...)...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := runVerb(b, append([]string{script, "up", "--yes"}, flags...)...)
		if !strings.Contains(out, "No changes") {
			b.StopTimer()
			b.Fatalf("the second up is not a no-op:\n%s", out)
		}
	}
}
