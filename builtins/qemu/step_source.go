package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// stepSource prepares what the VM boots. Source "iso": the ISO, a local
// file or an http(s) URL downloaded into the cache (named by its
// checksum, so a second build downloads nothing), verified against
// iso_checksum before qemu ever sees it, and an empty working disk of
// disk_size. Source "disk": a qcow2 overlay on base_image of disk_size
// (the base is read, never written; qemu-img convert flattens the overlay
// into the output), so that starting the build copies nothing.
type stepSource struct{}

func (stepSource) name() string { return "prepare the disk" }

func (stepSource) run(ctx context.Context, b *build) error {
	b.disk = filepath.Join(b.tmpDir, "disk.qcow2")
	size := int64(b.spec.DiskSize)
	switch b.spec.Source {
	case "iso":
		iso, err := fetchISO(ctx, b)
		if err != nil {
			return err
		}
		b.cdrom = iso
		_, err = b.tools.Img(ctx, nil, createArgs(b.disk, size, "", "")...)
		return err
	case "disk":
		base := b.resolve(b.spec.BaseImage)
		info, err := imageInfo(ctx, b.tools, base)
		if err != nil {
			return fmt.Errorf("base_image %s: %w", b.spec.BaseImage, err)
		}
		if baseMiB := (info.VirtualSize + 1<<20 - 1) >> 20; size < baseMiB {
			return fmt.Errorf("disk_size %d MiB is smaller than base_image %s (%d MiB): a disk cannot shrink; set disk_size to at least %d", size, b.spec.BaseImage, baseMiB, baseMiB)
		}
		_, err = b.tools.Img(ctx, nil, createArgs(b.disk, size, base, info.Format)...)
		return err
	}
	return fmt.Errorf("source %q: want \"iso\" or \"disk\"", b.spec.Source)
}

// cleanup: the working disk is in the build folder, which stepOutput
// removes; a partial download is removed by fetchISO itself.
func (stepSource) cleanup(*build) {}

// imgInfo is what qemu-img info --output=json says of an image.
type imgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

func imageInfo(ctx context.Context, t Tools, path string) (*imgInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	out, err := t.Img(ctx, nil, "info", "--output=json", path)
	if err != nil {
		return nil, err
	}
	var info imgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("qemu-img info: %w", err)
	}
	return &info, nil
}

// fetchISO returns the path of the verified ISO: the local file, or the
// cached download of the URL.
func fetchISO(ctx context.Context, b *build) (string, error) {
	want := strings.TrimPrefix(b.spec.ISOChecksum, "sha256:")
	if !strings.Contains(b.spec.ISO, "://") {
		path := b.resolve(b.spec.ISO)
		b.rep.Notef(b.addr, "verifying %s", b.spec.ISO)
		got, err := sha256File(path)
		if err != nil {
			return "", fmt.Errorf("iso: %w", err)
		}
		if got != want {
			return "", fmt.Errorf("iso %s: sha256 %s, want %s (iso_checksum): the file is not the ISO the script names", b.spec.ISO, got, want)
		}
		return path, nil
	}
	dir := filepath.Join(b.opts.cacheDir(), "iso")
	cached := filepath.Join(dir, want+".iso")
	if _, err := os.Stat(cached); err == nil {
		// Named by its checksum only after it was verified.
		return cached, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.spec.ISO, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", b.spec.ISO, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", b.spec.ISO, resp.Status)
	}
	h := newSHA256Writer(tmp)
	pw := &progressWriter{w: h, total: resp.ContentLength, report: func(done, total int64) {
		b.rep.Progress(b.addr, "downloading ISO", done, total)
	}}
	if _, err := io.Copy(pw, resp.Body); err != nil {
		return "", fmt.Errorf("download %s: %w", b.spec.ISO, err)
	}
	if got := h.sum(); got != want {
		return "", fmt.Errorf("iso %s: downloaded sha256 %s, want %s (iso_checksum): not kept", b.spec.ISO, got, want)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		return "", err
	}
	return cached, nil
}
