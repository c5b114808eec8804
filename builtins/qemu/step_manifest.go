package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// manifest is "<name>_<version>.<format>.json" beside the image: what was
// built from what. Its inputs hash decides whether the next up rebuilds.
type manifest struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Image       string    `json:"image"` // the file name, beside the manifest
	Format      string    `json:"format"`
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	InputsHash  string    `json:"inputs_hash"`
	Inputs      *inputs   `json:"inputs"`
	QemuVersion string    `json:"qemu_version"`
	Accelerator string    `json:"accelerator"`
	BuiltAt     time.Time `json:"built_at"`
	BuildTime   string    `json:"build_time"`
}

// manifestPath is the manifest of image file path.
func manifestPath(image string) string { return image + ".json" }

// readManifest reads a manifest; a missing one is (nil, nil).
func readManifest(path string) (*manifest, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	return &m, nil
}

// stepManifest writes the manifest of the converted image in the build
// folder; stepOutput's publish moves both into place.
type stepManifest struct{}

func (stepManifest) name() string { return "write the manifest" }

func (stepManifest) run(ctx context.Context, b *build) error {
	b.rep.Notef(b.addr, "hashing %s", filepath.Base(b.output))
	sum, err := sha256File(b.output)
	if err != nil {
		return err
	}
	fi, err := os.Stat(b.output)
	if err != nil {
		return err
	}
	version, err := b.tools.Version(ctx)
	if err != nil {
		return err
	}
	m := manifest{
		Name: b.name, Version: b.spec.Version, Image: b.spec.OutputFile, Format: b.spec.Format,
		SHA256: sum, Size: fi.Size(), InputsHash: b.inputs.Hash(), Inputs: b.inputs,
		QemuVersion: version, Accelerator: b.accel,
		BuiltAt: time.Now().UTC().Truncate(time.Second), BuildTime: time.Since(b.started).Round(time.Millisecond).String(),
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b.manifestPath = manifestPath(b.output)
	return os.WriteFile(b.manifestPath, append(data, '\n'), 0o644)
}

// cleanup: the manifest lives in the build folder until it is published.
func (stepManifest) cleanup(*build) {}
