package qemu

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/studiorun/studiorun/builtins/libvirt"
	"github.com/studiorun/studiorun/runtime"
)

// Image is the spec of qemu.image: a disk image built by installing an OS
// from an ISO (source "iso") or starting from a base disk image (source
// "disk"), provisioned over SSH, and written to OutputDir/OutputFile.
type Image struct {
	Version     string `json:"version"`
	Source      string `json:"source"`
	ISO         string `json:"iso,omitempty"`          // http(s) URL or project path
	ISOChecksum string `json:"iso_checksum,omitempty"` // "sha256:<64 hex digits>"
	BaseImage   string `json:"base_image,omitempty"`   // project path
	OutputDir   string `json:"output_dir"`
	// OutputFile is "<name>_<version>.<format>", the image in OutputDir.
	OutputFile      string                   `json:"output_file"`
	Format          string                   `json:"format"`
	Compress        bool                     `json:"compress"`
	DiskSize        runtime.MiB              `json:"disk_size"`
	Memory          runtime.MiB              `json:"memory"`
	CPUs            int                      `json:"cpus"`
	Accelerator     string                   `json:"accelerator"`
	HTTPFiles       map[string]*runtime.Text `json:"http_files,omitempty"`
	BootWait        runtime.Duration         `json:"boot_wait"`
	BootCommand     []string                 `json:"boot_command,omitempty"`
	SSHUsername     string                   `json:"ssh_username"`
	SSHPassword     *runtime.Secret          `json:"ssh_password,omitempty"`
	SSHKey          string                   `json:"ssh_private_key,omitempty"` // project path
	SSHTimeout      runtime.Duration         `json:"ssh_timeout"`
	ShutdownCommand string                   `json:"shutdown_command"`
	ShutdownTimeout runtime.Duration         `json:"shutdown_timeout"`
	// Network names the libvirt network of this machine's qemu:///system
	// whose bridge the build VM joins; "" for user-mode networking.
	Network string `json:"network,omitempty"`
	// Provision names the role function that provisions the build VM, and
	// ProvisionHost the ssh.host its tasks are declared on.
	Provision     string          `json:"provision,omitempty"`
	ProvisionHost runtime.Address `json:"provision_host,omitempty"`
}

// Kind implements runtime.Spec.
func (*Image) Kind() string { return "qemu.image" }

var (
	versionRE  = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.-]{0,63}$`)
	sha256RE   = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)
	bareHexRE  = regexp.MustCompile(`^[0-9a-fA-F]{32,128}$`)
	httpPathRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$`)
)

// checkVersion checks an image version such as "0.1.0".
func checkVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("version %q: want letters, digits, '.' and '-', starting with a letter or digit, such as \"0.1.0\"", v)
	}
	return nil
}

// checkSource checks that the arguments fit the source: "iso" installs
// from iso, verified by iso_checksum; "disk" starts from base_image.
func checkSource(spec *Image) error {
	switch spec.Source {
	case "iso":
		if spec.BaseImage != "" {
			return fmt.Errorf("base_image is for source \"disk\"; source \"iso\" installs from iso (or set source = \"disk\")")
		}
		if spec.ISO == "" {
			return fmt.Errorf("source \"iso\" needs iso: an http(s) URL or a local path of the installer ISO")
		}
		return checkISOChecksum(spec.ISOChecksum)
	case "disk":
		if spec.ISO != "" || spec.ISOChecksum != "" {
			return fmt.Errorf("iso and iso_checksum are for source \"iso\"; source \"disk\" starts from base_image (or set source = \"iso\")")
		}
		if spec.BaseImage == "" {
			return fmt.Errorf("source \"disk\" needs base_image: the local path of the disk image to start from")
		}
		return nil
	}
	return fmt.Errorf("source %q: want \"iso\" (install from an ISO) or \"disk\" (start from base_image)", spec.Source)
}

// checkISOChecksum requires "sha256:<64 hex digits>": an ISO is verified
// before qemu boots it.
func checkISOChecksum(sum string) error {
	switch {
	case sum == "":
		return fmt.Errorf("source \"iso\" needs iso_checksum = \"sha256:<64 hex digits>\": an unverified ISO is never booted")
	case sha256RE.MatchString(sum):
		return nil
	case len(sum) == 64 && bareHexRE.MatchString(sum):
		return fmt.Errorf("iso_checksum %q has no type: write \"sha256:%s\" (Packer's separate iso_checksum_type is not supported)", sum, sum)
	case bareHexRE.MatchString(sum) || strings.Contains(sum, ":"):
		return fmt.Errorf("iso_checksum %q: only sha256 is supported: want \"sha256:<64 hex digits>\"", sum)
	}
	return fmt.Errorf("iso_checksum %q: want \"sha256:<64 hex digits>\"", sum)
}

// isoLocation keeps an http(s) URL and resolves a local path in the project.
func isoLocation(thread *starlark.Thread, iso string) (string, error) {
	if !strings.Contains(iso, "://") {
		p, err := runtime.ProjectPath(thread, iso)
		if err != nil {
			return "", fmt.Errorf("iso: %w", err)
		}
		return p, nil
	}
	u, err := url.Parse(iso)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("iso %q: want an http or https URL, or a local path", iso)
	}
	return iso, nil
}

// localPath resolves a path argument that must name a local file.
func localPath(thread *starlark.Thread, what, p string) (string, error) {
	if strings.Contains(p, "://") {
		return "", fmt.Errorf("%s %q: want a local path, not a URL", what, p)
	}
	resolved, err := runtime.ProjectPath(thread, p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return resolved, nil
}

// unpackHTTPFiles reads http_files: file names served to the installer,
// mapped to string or secret contents.
func unpackHTTPFiles(d *starlark.Dict) (map[string]*runtime.Text, error) {
	files := make(map[string]*runtime.Text, d.Len())
	for _, item := range d.Items() {
		name, ok := starlark.AsString(item[0])
		if !ok {
			return nil, fmt.Errorf("http_files: key %s is not a string: want file names such as \"ks.cfg\"", item[0])
		}
		if !httpPathRE.MatchString(name) || strings.Contains("/"+name+"/", "/../") {
			return nil, fmt.Errorf("http_files: %q: want a relative file name such as \"ks.cfg\" (letters, digits, '.', '_', '-', '/')", name)
		}
		text, err := runtime.UnpackText(fmt.Sprintf("http_files[%q]", name), item[1])
		if err != nil {
			return nil, err
		}
		files[name] = text
	}
	return files, nil
}

// servedPathRE finds the paths a boot command fetches from the build's
// HTTP server: "http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg".
var servedPathRE = regexp.MustCompile(`\{\{-?\s*\.HTTPPort\s*-?\}\}/([^\s<?#]*)`)

// checkBootCommand parses the boot command as the builder will type it and
// checks that the files it fetches from the build's HTTP server are served.
func checkBootCommand(entries []string, name string, files map[string]*runtime.Text) error {
	if _, err := ParseBootCommand(entries, BootVars{HTTPIP: "10.0.2.2", HTTPPort: 8000, Name: name}); err != nil {
		return err
	}
	for i, entry := range entries {
		for _, m := range servedPathRE.FindAllStringSubmatch(entry, -1) {
			if _, ok := files[m[1]]; m[1] != "" && !ok {
				return fmt.Errorf("boot_command[%d] %q fetches %s, which http_files does not serve (it serves %s)", i, entry, m[1], servedNames(files))
			}
		}
		if len(files) == 0 && strings.Contains(entry, ".HTTP") {
			return fmt.Errorf("boot_command[%d] %q uses the build's HTTP server, but http_files is empty", i, entry)
		}
	}
	return nil
}

func servedNames(files map[string]*runtime.Text) string {
	if len(files) == 0 {
		return "nothing"
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// unpackNetwork reads network: a libvirt network's name, or a
// libvirt.network or libvirt.existing_network of the plan (the image then
// depends on it). It returns the name and the network's address, if any.
// The build VM runs on this machine: a network placed on another
// hypervisor is refused.
func unpackNetwork(v starlark.Value) (string, runtime.Address, error) {
	switch v := v.(type) {
	case nil, starlark.NoneType:
		return "", "", nil
	case starlark.String:
		if !runtime.ValidName(string(v)) {
			return "", "", fmt.Errorf("network %q: want the name of a libvirt network of %s (%s), or a libvirt.network", string(v), localLibvirt, runtime.NameRule)
		}
		return string(v), "", nil
	case runtime.Referent:
		r := v.Resource()
		if k := r.Kind(); k != "libvirt.network" && k != "libvirt.existing_network" {
			return "", "", fmt.Errorf("network: got %s %q, want a libvirt.network, a libvirt.existing_network or a network name", k, r.Name)
		}
		if on := libvirt.HypervisorOf(r.Spec); on != "" && on != localLibvirt {
			return "", "", fmt.Errorf("network: %s is on %s, but the build VM runs on this machine and joins a network of %s", r.Address, on, localLibvirt)
		}
		return r.Name, r.Address, nil
	}
	return "", "", fmt.Errorf("network: got %s, want a libvirt network name or a libvirt.network", v.Type())
}
