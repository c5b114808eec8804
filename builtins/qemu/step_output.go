package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// stepOutput makes the build folder: a hidden folder beside output_dir
// (on the same file system, so that publishing is a rename) where the
// working disk, the serial log and the converted image live. Nothing is
// written into output_dir before the build has succeeded: publish then
// renames the image and, last, its manifest into place. The cleanup
// removes the build folder whatever happened; after a failure (not a
// cancel) it first keeps the serial log as output_dir/<image>.serial.log
// for diagnosis.
type stepOutput struct {
	published bool
}

func (*stepOutput) name() string { return "prepare the output folder" }

func (s *stepOutput) run(_ context.Context, b *build) error {
	b.outDir = b.resolve(b.spec.OutputDir)
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return err
	}
	b.final = filepath.Join(b.outDir, b.spec.OutputFile)
	prefix := "." + filepath.Base(b.outDir) + "-" + b.spec.OutputFile + "-build-"
	removeStaleBuilds(filepath.Dir(b.outDir), prefix)
	dir, err := os.MkdirTemp(filepath.Dir(b.outDir), prefix)
	if err != nil {
		return err
	}
	b.tmpDir = dir
	return os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

// removeStaleBuilds removes the build folders of this image left by a
// studiorun that was killed (SIGKILL skips the cleanups): those whose pid
// file names a process that is gone.
func removeStaleBuilds(parent, prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, prefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// publish moves the converted image and then its manifest into
// output_dir, replacing the previous ones.
func (s *stepOutput) publish(b *build) error {
	if err := os.Rename(b.output, b.final); err != nil {
		return fmt.Errorf("publish %s: %w", b.final, err)
	}
	if err := os.Rename(b.manifestPath, manifestPath(b.final)); err != nil {
		return fmt.Errorf("publish %s: %w", manifestPath(b.final), err)
	}
	s.published = true
	os.Remove(filepath.Join(b.outDir, b.spec.OutputFile+".serial.log"))
	return nil
}

func (s *stepOutput) cleanup(b *build) {
	if b.tmpDir == "" {
		return
	}
	if !s.published && !b.cancelled {
		copyFile(filepath.Join(b.tmpDir, "serial.log"), filepath.Join(b.outDir, b.spec.OutputFile+".serial.log"))
	}
	os.RemoveAll(b.tmpDir)
}

// resolve makes a spec path absolute: relative ones are from the project
// root, "~/" is the home of whoever applies the plan.
func (b *build) resolve(p string) string { return resolvePath(b.root, p) }

func resolvePath(root, p string) string {
	switch {
	case p == "" || filepath.IsAbs(p):
		return p
	case len(p) > 1 && p[:2] == "~/":
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return filepath.Join(root, p)
}

// copyFile copies src to dst when src exists, best effort.
func copyFile(src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		return
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return
	}
	defer out.Close()
	_, _ = io.Copy(out, in)
}
