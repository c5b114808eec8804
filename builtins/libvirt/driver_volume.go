package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/studiorun/studiorun/runtime"
	"github.com/studiorun/studiorun/runtime/apply"
)

// A volume's state entry ID is "<key>|<fingerprint>": libvirt's key (the
// volume's path in a dir pool) and what its content was made from:
// "sha256:<hex>" of an uploaded image, "overlay:<hash of the base's
// fingerprint>" for a copy-on-write overlay, "blank" for an empty volume.
// A changed fingerprint replaces the volume: an image that changed is
// uploaded again, and the overlays on a base that is replaced are
// replaced with it.

// splitVolumeID splits an entry ID into the key and the fingerprint.
func splitVolumeID(id string) (key, fingerprint string) {
	key, fingerprint, _ = strings.Cut(id, "|")
	return key, fingerprint
}

// fileHash is a cached sha256 of a local file.
type fileHash struct {
	size  int64
	mtime time.Time
	sum   string
}

// sourcePath returns the local path of a volume's source.
func (d *Driver) sourcePath(src string) string {
	if filepath.IsAbs(src) {
		return src
	}
	return filepath.Join(d.root, filepath.FromSlash(src))
}

// hashFile returns "sha256:<hex>" of a local file, cached by size and
// modification time.
func (d *Driver) hashFile(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	h, ok := d.hashes[p]
	d.mu.Unlock()
	if ok && h.size == fi.Size() && h.mtime.Equal(fi.ModTime()) {
		return h.sum, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	h = fileHash{size: fi.Size(), mtime: fi.ModTime(), sum: "sha256:" + hex.EncodeToString(sum.Sum(nil))}
	d.mu.Lock()
	d.hashes[p] = h
	d.mu.Unlock()
	return h.sum, nil
}

// fingerprint returns what the volume's content is made from (see
// above), or "" when it cannot be known (a base the driver has not seen).
func (d *Driver) fingerprint(spec *Volume, depth int) (string, error) {
	switch {
	case spec.Source != "":
		return d.hashFile(d.sourcePath(spec.Source))
	case spec.Base != "":
		base := d.resource(spec.Base)
		if base == nil || depth > 32 {
			return "", nil
		}
		var of string
		switch b := base.Spec.(type) {
		case *Volume:
			fp, err := d.fingerprint(b, depth+1)
			if err != nil || fp == "" {
				return "", err
			}
			of = fp
		default:
			of = "existing:" + string(base.Address)
		}
		sum := sha256.Sum256([]byte(of))
		return "overlay:" + hex.EncodeToString(sum[:8]), nil
	}
	return "blank", nil
}

// poolPath returns the target directory of a pool declared in the plan
// (or, for an existing pool, read from libvirt), or "" when unknown.
func (d *Driver) poolPath(l *golibvirt.Libvirt, pool runtime.Address) string {
	if r := d.resource(pool); r != nil {
		if p, ok := r.Spec.(*Pool); ok {
			return p.Path
		}
	}
	if _, x, err := readPool(l, pool.Name()); err == nil && x != nil && x.Target != nil {
		return x.Target.Path
	}
	return ""
}

// volumePool returns the pool of a volume or existing volume the driver
// has seen.
func (d *Driver) volumePool(addr runtime.Address) runtime.Address {
	switch s := d.resourceSpec(addr).(type) {
	case *Volume:
		return s.Pool
	case *ExistingVolume:
		return s.Pool
	}
	return ""
}

// resourceSpec returns the spec of a resource the driver has seen.
func (d *Driver) resourceSpec(addr runtime.Address) runtime.Spec {
	if r := d.resource(addr); r != nil {
		return r.Spec
	}
	return nil
}

// readVolume returns a volume's definition, or nil when it (or its pool)
// does not exist.
func readVolume(l *golibvirt.Libvirt, pool, name string) (golibvirt.StorageVol, *libvirtxml.StorageVolume, error) {
	var v golibvirt.StorageVol
	p, err := l.StoragePoolLookupByName(pool)
	if isNotFound(err) {
		return v, nil, nil
	}
	if err != nil {
		return v, nil, err
	}
	// A pool defined but not started (a run killed in between) holds no
	// volume that libvirt can list yet.
	if active, err := l.StoragePoolIsActive(p); err != nil {
		return v, nil, err
	} else if active == 0 {
		return v, nil, nil
	}
	v, err = l.StorageVolLookupByName(p, name)
	if isNotFound(err) {
		return v, nil, nil
	}
	if err != nil {
		return v, nil, err
	}
	s, err := l.StorageVolGetXMLDesc(v, 0)
	if err != nil {
		return v, nil, err
	}
	var x libvirtxml.StorageVolume
	if err := x.Unmarshal(s); err != nil {
		return v, nil, err
	}
	return v, &x, nil
}

// diffVolume compares a volume with its declaration.
func (d *Driver) diffVolume(l *golibvirt.Libvirt, r *runtime.Resource, spec *Volume, owned *apply.Entry) (*apply.Change, error) {
	pool := spec.Pool.Name()
	v, x, err := readVolume(l, pool, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read volume %s in pool %s at %s: %w", r.Address, r.Name, pool, d.uri, err)
	}
	fp, err := d.fingerprint(spec, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: source: %w", r.Address, err)
	}
	if x == nil {
		return &apply.Change{Action: apply.Create}, nil
	}
	key, oldFP := "", ""
	if owned != nil {
		key, oldFP = splitVolumeID(owned.ID)
	}
	if owned == nil || (key != "" && key != v.Key) {
		return nil, fmt.Errorf("%s: a volume %s exists in pool %s that studiorun did not create; remove it or rename the declaration (or declare it with libvirt.existing_volume)", r.Address, r.Name, pool)
	}
	c := &apply.Change{Action: apply.NoOp}
	replace := func(name, old, new, note string) {
		c.Action = apply.Replace
		c.Attrs = append(c.Attrs, apply.AttrChange{Name: name, Old: old, New: new, ForcesReplace: true, Note: note})
	}
	format := ""
	if x.Target != nil && x.Target.Format != nil {
		format = x.Target.Format.Type
	}
	if format != "" && format != spec.Format {
		replace("format", format, spec.Format, "")
	}
	if spec.Base != "" {
		basePath := ""
		if dir := d.poolPath(l, d.volumePool(spec.Base)); dir != "" {
			basePath = path.Join(dir, spec.Base.Name())
		}
		have := ""
		if x.BackingStore != nil {
			have = x.BackingStore.Path
		}
		if basePath != "" && have != basePath {
			replace("base", have, basePath, "the overlay is on another base")
		}
	}
	if fp != "" && oldFP != "" && fp != oldFP {
		switch {
		case spec.Source != "":
			replace("source", oldFP, fp, "the image changed")
		case spec.Base != "":
			replace("base", string(spec.Base), string(spec.Base), "the base image changed")
		default:
			replace("origin", oldFP, fp, "")
		}
	}
	if spec.SizeMiB > 0 && c.Action == apply.NoOp && x.Capacity != nil {
		have := capacityBytes(x.Capacity)
		want := uint64(spec.SizeMiB) << 20
		switch {
		case have < want:
			c.Action = apply.Update
			c.Attrs = append(c.Attrs, apply.AttrChange{Name: "size_mib", Old: strconv.FormatUint(have>>20, 10), New: strconv.FormatInt(int64(spec.SizeMiB), 10), Note: "grown in place; grow the guest's file system to use it"})
		case have > want:
			replace("size_mib", strconv.FormatUint(have>>20, 10), strconv.FormatInt(int64(spec.SizeMiB), 10), "a volume cannot shrink")
		}
	}
	return c, nil
}

// capacityBytes reads a volume size in bytes.
func capacityBytes(s *libvirtxml.StorageVolumeSize) uint64 {
	mult := map[string]uint64{"": 1, "bytes": 1, "b": 1, "KiB": 1 << 10, "k": 1 << 10, "MiB": 1 << 20, "M": 1 << 20, "GiB": 1 << 30, "G": 1 << 30, "TiB": 1 << 40, "T": 1 << 40}[s.Unit]
	if mult == 0 {
		mult = 1
	}
	return s.Value * mult
}

// applyVolume creates (uploads, overlays), grows or replaces a volume.
func (d *Driver) applyVolume(ctx context.Context, l *golibvirt.Libvirt, r *runtime.Resource, spec *Volume, c *apply.Change, rep apply.Reporter) (*apply.Entry, error) {
	pool := spec.Pool.Name()
	fp, err := d.fingerprint(spec, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: source: %w", r.Address, err)
	}
	v, x, err := readVolume(l, pool, r.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: read volume %s in pool %s at %s: %w", r.Address, r.Name, pool, d.uri, err)
	}
	if x != nil && c.Action == apply.Replace {
		if err := l.StorageVolDelete(v, 0); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("delete volume %s in pool %s at %s: %w", r.Name, pool, d.uri, err)
		}
		x = nil
	}
	if x != nil { // an update: grow
		if spec.SizeMiB > 0 && x.Capacity != nil && capacityBytes(x.Capacity) < uint64(spec.SizeMiB)<<20 {
			if err := l.StorageVolResize(v, uint64(spec.SizeMiB)<<20, 0); err != nil {
				return nil, fmt.Errorf("grow volume %s in pool %s to %d MiB at %s: %w", r.Name, pool, spec.SizeMiB, d.uri, err)
			}
		}
		return entry(r, v.Key+"|"+fp), nil
	}
	p, err := l.StoragePoolLookupByName(pool)
	if err != nil {
		return nil, fmt.Errorf("%s: look up storage pool %s at %s: %w", r.Address, pool, d.uri, err)
	}
	vx := &libvirtxml.StorageVolume{
		Name:   r.Name,
		Target: &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: spec.Format}},
	}
	var src *os.File
	var srcSize int64
	switch {
	case spec.Source != "":
		if src, err = os.Open(d.sourcePath(spec.Source)); err != nil {
			return nil, fmt.Errorf("%s: source: %w", r.Address, err)
		}
		defer src.Close()
		fi, err := src.Stat()
		if err != nil {
			return nil, fmt.Errorf("%s: source: %w", r.Address, err)
		}
		srcSize = fi.Size()
		// The upload replaces the whole file; libvirt reads the image's
		// virtual size from it when the pool is refreshed.
		vx.Capacity = &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(srcSize)}
	case spec.Base != "":
		bpool := d.volumePool(spec.Base)
		if bpool == "" {
			return nil, fmt.Errorf("%s: base %s: the driver has not seen its declaration", r.Address, spec.Base)
		}
		_, bx, err := readVolume(l, bpool.Name(), spec.Base.Name())
		if err != nil || bx == nil {
			return nil, fmt.Errorf("%s: read base volume %s in pool %s at %s: %v", r.Address, spec.Base.Name(), bpool.Name(), d.uri, err)
		}
		bformat := "raw"
		if bx.Target != nil && bx.Target.Format != nil && bx.Target.Format.Type != "" {
			bformat = bx.Target.Format.Type
		}
		vx.BackingStore = &libvirtxml.StorageVolumeBackingStore{Path: bx.Target.Path, Format: &libvirtxml.StorageVolumeTargetFormat{Type: bformat}}
		vx.Capacity = bx.Capacity
		if spec.SizeMiB > 0 {
			vx.Capacity = &libvirtxml.StorageVolumeSize{Unit: "MiB", Value: uint64(spec.SizeMiB)}
		}
	default:
		vx.Capacity = &libvirtxml.StorageVolumeSize{Unit: "MiB", Value: uint64(spec.SizeMiB)}
	}
	doc, err := vx.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%s: volume XML: %w", r.Address, err)
	}
	if v, err = l.StorageVolCreateXML(p, doc, 0); err != nil {
		return nil, fmt.Errorf("create volume %s in pool %s at %s: %w", r.Name, pool, d.uri, err)
	}
	if src != nil {
		if err := d.upload(ctx, l, r, v, src, srcSize, rep); err != nil {
			_ = l.StorageVolDelete(v, 0) // no half-uploaded image
			return nil, err
		}
		// libvirt reads the uploaded image's format header (its virtual
		// size, which overlays on it inherit) when the pool is refreshed.
		if err := l.StoragePoolRefresh(p, 0); err != nil {
			return nil, fmt.Errorf("refresh storage pool %s at %s: %w", pool, d.uri, err)
		}
	}
	return entry(r, v.Key+"|"+fp), nil
}

// upload streams a local image into a volume with StorageVolUpload,
// reporting progress.
func (d *Driver) upload(ctx context.Context, l *golibvirt.Libvirt, r *runtime.Resource, v golibvirt.StorageVol, src *os.File, size int64, rep apply.Reporter) error {
	if strings.HasPrefix(d.uri, "test:") {
		// libvirt's test driver keeps no volume contents and does not
		// implement StorageVolUpload ("this function is not supported by
		// the connection driver"): there is nothing to upload to.
		if rep != nil {
			rep.Notef(r.Address, "test driver: upload of %d bytes skipped", size)
		}
		return nil
	}
	pr := &progressReader{ctx: ctx, r: src, addr: r.Address, total: size, rep: rep}
	if err := l.StorageVolUpload(v, pr, 0, uint64(size), 0); err != nil {
		return fmt.Errorf("upload %s to volume %s at %s: %w", src.Name(), r.Name, d.uri, err)
	}
	if pr.done != size {
		return fmt.Errorf("upload %s to volume %s at %s: sent %d of %d bytes", src.Name(), r.Name, d.uri, pr.done, size)
	}
	return nil
}

// progressReader reports the bytes read through it.
type progressReader struct {
	ctx         context.Context
	r           io.Reader
	addr        runtime.Address
	done, total int64
	rep         apply.Reporter
	last        time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.rep != nil && (err == io.EOF || time.Since(p.last) > 200*time.Millisecond || p.done == p.total) {
		p.last = time.Now()
		p.rep.Progress(p.addr, "upload", p.done, p.total)
	}
	return n, err
}

// deleteVolume deletes an owned volume by its key, or by pool and name.
func (d *Driver) deleteVolume(l *golibvirt.Libvirt, e *apply.Entry) error {
	key, _ := splitVolumeID(e.ID)
	var v golibvirt.StorageVol
	var err error
	found := false
	if key != "" {
		v, err = l.StorageVolLookupByKey(key)
		found = err == nil
	}
	if key != "" && !found && err != nil && !isNotFound(err) {
		return fmt.Errorf("%s: look up volume %s at %s: %w", e.Address, key, d.uri, err)
	}
	if !found && key == "" { // an entry from an interrupted create
		var spec Volume
		if len(e.Spec) > 0 && json.Unmarshal(e.Spec, &spec) == nil && spec.Pool != "" {
			var x *libvirtxml.StorageVolume
			v, x, err = readVolume(l, spec.Pool.Name(), e.Name)
			if err != nil {
				return fmt.Errorf("%s: read volume %s at %s: %w", e.Address, e.Name, d.uri, err)
			}
			found = x != nil
		}
	}
	if !found {
		return nil
	}
	if err := l.StorageVolDelete(v, 0); err != nil && !isNotFound(err) {
		return fmt.Errorf("%s: delete volume %s at %s: %w", e.Address, e.Name, d.uri, err)
	}
	return nil
}
