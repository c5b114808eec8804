package qemu

// The inputs of an image build and their hash: the build is skipped when
// the manifest beside the image records the same hash.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/studiorun/studiorun/runtime"
)

// inputs are the hashed parts of what a build depends on, by name:
// "spec" (the image's attributes, secrets revealed then hashed),
// "provision" (the provisioning tasks' attributes), "iso" (its declared
// sha256), "base_image", "ssh_private_key" and "http_files/<name>" (the
// sha256 of their contents).
type inputs struct {
	Parts map[string]string `json:"parts"`
	// Files caches the sha256 of local files by path, with their size and
	// modification time, so that an unchanged input is not read again.
	Files map[string]fileStamp `json:"files,omitempty"`
}

// fileStamp is a local input file as it was hashed.
type fileStamp struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256"`
}

// Hash is the hash of all the parts, "sha256:<hex>".
func (in *inputs) Hash() string {
	names := make([]string, 0, len(in.Parts))
	for n := range in.Parts {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, in.Parts[n])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// changed returns the names of the parts that differ between old and in,
// sorted.
func (in *inputs) changed(old *inputs) []string {
	var names []string
	for n, v := range in.Parts {
		if old == nil || old.Parts[n] != v {
			names = append(names, n)
		}
	}
	if old != nil {
		for n := range old.Parts {
			if _, ok := in.Parts[n]; !ok {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// computeInputs hashes the inputs of image r; tasks are the resources
// its provisioning declares; resolve makes a spec's path absolute; prev,
// when not nil, lends the file hashes of the last build.
func computeInputs(r *runtime.Resource, spec *Image, tasks []*runtime.Resource, resolve func(string) string, prev *inputs) (*inputs, error) {
	in := &inputs{Parts: map[string]string{}, Files: map[string]fileStamp{}}
	h, err := hashSpec(spec)
	if err != nil {
		return nil, err
	}
	in.Parts["spec"] = h
	if len(tasks) > 0 {
		ph := sha256.New()
		for _, t := range tasks {
			th, err := hashSpec(t.Spec)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(ph, "%s %s\n", t.Address, th)
		}
		in.Parts["provision"] = hex.EncodeToString(ph.Sum(nil))
	}
	if spec.ISOChecksum != "" {
		// The ISO is verified against it before it is booted.
		in.Parts["iso"] = strings.TrimPrefix(spec.ISOChecksum, "sha256:")
	}
	files := []struct{ part, path string }{{"base_image", spec.BaseImage}, {"ssh_private_key", spec.SSHKey}}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		sum, err := in.hashFile(resolve(f.path), prev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.part, err)
		}
		in.Parts[f.part] = sum
	}
	for name, text := range spec.HTTPFiles {
		sum := sha256.Sum256([]byte(text.Reveal()))
		in.Parts["http_files/"+name] = hex.EncodeToString(sum[:])
	}
	return in, nil
}

// hashFile returns the sha256 of a local file, from prev when its size
// and modification time have not changed.
func (in *inputs) hashFile(path string, prev *inputs) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	stamp := fileStamp{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	if prev != nil {
		if p, ok := prev.Files[path]; ok && p.Size == stamp.Size && p.ModTime == stamp.ModTime && p.SHA256 != "" {
			in.Files[path] = p
			return p.SHA256, nil
		}
	}
	sum, err := sha256File(path)
	if err != nil {
		return "", err
	}
	stamp.SHA256 = sum
	in.Files[path] = stamp
	return sum, nil
}

// sha256File returns the hex sha256 of a file.
func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashSpec hashes a spec's JSON (which shows secrets as "(secret)") and
// the sha256 of every secret value in it, so that a changed password
// changes the hash without the password being written anywhere.
func hashSpec(spec any) (string, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	h := sha256.New()
	h.Write(data)
	for _, s := range revealSecrets(reflect.ValueOf(spec), nil) {
		sum := sha256.Sum256([]byte(s))
		h.Write([]byte{0})
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var (
	secretType = reflect.TypeOf(runtime.Secret{})
	textType   = reflect.TypeOf(runtime.Text{})
)

// revealSecrets collects the values of the secrets (runtime.Secret and
// secret runtime.Text) in v, in a stable order (map keys sorted).
func revealSecrets(v reflect.Value, out []string) []string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return out
		}
		return revealSecrets(v.Elem(), out)
	case reflect.Struct:
		switch v.Type() {
		case secretType:
			s := v.Interface().(runtime.Secret)
			return append(out, s.Reveal())
		case textType:
			t := v.Addr().Interface().(*runtime.Text)
			if t.Secret() {
				out = append(out, t.Reveal())
			}
			return out
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				out = revealSecrets(v.Field(i), out)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			out = revealSecrets(v.Index(i), out)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			out = revealSecrets(v.MapIndex(k), out)
		}
	}
	return out
}
