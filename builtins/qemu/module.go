// Package qemu is the Starlark module for disk images built with qemu, the
// way Packer's qemu builder builds them:
//
//	qemu.image(name, version, source="iso", iso=None, iso_checksum=None,
//	    base_image=None, http_files={}, boot_command=[], boot_wait="10s",
//	    disk_size=30000, format="qcow2", compress=False, memory=1024, cpus=2,
//	    accelerator="auto", ssh_username="root", ssh_password=None,
//	    ssh_private_key=None, ssh_timeout="30m",
//	    shutdown_command="shutdown -P now", shutdown_timeout="5m",
//	    provision=None, network=None, output_dir="build") -> qemu.image
//
// source "iso" installs from iso (an http(s) URL or a local path, verified
// by iso_checksum = "sha256:...") with boot_command typed into the VM and
// http_files (file name -> text or secret, e.g. {"ks.cfg": kickstart})
// served to the installer; source "disk" starts from the local base_image.
// Sizes are MiB or strings such as "30GiB"; ssh_password must be a
// secret(). provision is a function called with the build VM's ssh.host,
// on which it declares tasks (a role such as ops_user). The image is
// written to output_dir as "<name>_<version>.<format>". network, a libvirt
// network's name or a libvirt.network, puts the build VM on that network
// of qemu:///system instead of user-mode networking.
package qemu

import (
	"fmt"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/studiorun/studiorun/builtins/ssh"
	"github.com/studiorun/studiorun/runtime"
)

// Module is the qemu module.
var Module = &starlarkstruct.Module{
	Name: "qemu",
	Members: starlark.StringDict{
		"image": starlark.NewBuiltin("qemu.image", image),
	},
}

// imageArgs are the arguments of qemu.image that need more than
// starlark.UnpackArgs to be read.
type imageArgs struct {
	iso, isoChecksum, baseImage, sshKey   starlark.Value
	diskSize, memory                      starlark.Value
	bootWait, sshTimeout, shutdownTimeout starlark.Value
	sshPassword, provision, network       starlark.Value
	bootCommand                           starlark.Value
	httpFiles                             *starlark.Dict
}

// image implements qemu.image.
func image(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	spec := Image{
		Source: "iso", OutputDir: "build", Format: "qcow2", CPUs: 2, Accelerator: "auto",
		DiskSize: 30000, Memory: 1024, SSHUsername: "root", ShutdownCommand: "shutdown -P now",
		BootWait: runtime.Duration(10 * time.Second), SSHTimeout: runtime.Duration(30 * time.Minute),
		ShutdownTimeout: runtime.Duration(5 * time.Minute),
	}
	a := imageArgs{httpFiles: new(starlark.Dict), bootCommand: starlark.NewList(nil)}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"name", &name, "version", &spec.Version, "source?", &spec.Source,
		"iso?", &a.iso, "iso_checksum?", &a.isoChecksum, "base_image?", &a.baseImage,
		"http_files?", &a.httpFiles, "boot_command?", &a.bootCommand, "boot_wait?", &a.bootWait,
		"disk_size?", &a.diskSize, "format?", &spec.Format, "compress?", &spec.Compress,
		"memory?", &a.memory, "cpus?", &spec.CPUs, "accelerator?", &spec.Accelerator,
		"ssh_username?", &spec.SSHUsername, "ssh_password?", &a.sshPassword,
		"ssh_private_key?", &a.sshKey, "ssh_timeout?", &a.sshTimeout,
		"shutdown_command?", &spec.ShutdownCommand, "shutdown_timeout?", &a.shutdownTimeout,
		"provision?", &a.provision, "network?", &a.network, "output_dir?", &spec.OutputDir,
	); err != nil {
		return nil, err
	}
	if !runtime.ValidName(name) {
		return nil, fmt.Errorf("%s: name %q: %s", b.Name(), name, runtime.NameRule)
	}
	if err := readImage(thread, name, &spec, &a); err != nil {
		return nil, fmt.Errorf("%s %q: %w", b.Name(), name, err)
	}
	var deps []runtime.Address
	network, netAddr, err := unpackNetwork(a.network)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", b.Name(), name, err)
	}
	if spec.Network = network; netAddr != "" {
		deps = append(deps, netAddr)
	}
	r, err := runtime.Declare(thread, b.Name(), name, &spec, deps...)
	if err != nil {
		return nil, err
	}
	if role, ok := a.provision.(starlark.Callable); ok {
		if err := provision(thread, b.Name(), r, &spec, role); err != nil {
			return nil, err
		}
	}
	return runtime.NewRef(r), nil
}

// provision declares the build VM's ssh.host, named "<image>-build", and
// calls role with it so that the role's tasks land in the plan. The host's
// address is known only once the VM runs.
func provision(thread *starlark.Thread, fn string, img *runtime.Resource, spec *Image, role starlark.Callable) error {
	host, err := ssh.DeclareHost(thread, fn, img.Name+"-build", &ssh.HostSpec{
		User:     spec.SSHUsername,
		Key:      spec.SSHKey,
		Password: spec.SSHPassword,
		Become:   spec.SSHUsername != "root",
		BuildOf:  img.Address,
	})
	if err != nil {
		return err
	}
	spec.ProvisionHost = host.(runtime.Referent).Resource().Address
	// The role's own errors already carry their position in its file.
	_, err = starlark.Call(thread, role, starlark.Tuple{host}, nil)
	return err
}

// readImage validates the arguments of the image called name into spec.
func readImage(thread *starlark.Thread, name string, spec *Image, a *imageArgs) error {
	if err := checkVersion(spec.Version); err != nil {
		return err
	}
	spec.OutputFile = fmt.Sprintf("%s_%s.%s", name, spec.Version, spec.Format)
	var err error
	for _, s := range []struct {
		param string
		v     starlark.Value
		dst   *string
	}{
		{"iso", a.iso, &spec.ISO}, {"iso_checksum", a.isoChecksum, &spec.ISOChecksum},
		{"base_image", a.baseImage, &spec.BaseImage}, {"ssh_private_key", a.sshKey, &spec.SSHKey},
	} {
		if *s.dst, err = optionalString(s.param, s.v); err != nil {
			return err
		}
	}
	if err := checkSource(spec); err != nil {
		return err
	}
	if spec.ISO != "" {
		if spec.ISO, err = isoLocation(thread, spec.ISO); err != nil {
			return err
		}
	}
	spec.ISOChecksum = strings.ToLower(spec.ISOChecksum)
	for _, p := range []struct {
		what string
		dst  *string
	}{{"base_image", &spec.BaseImage}, {"output_dir", &spec.OutputDir}, {"ssh_private_key", &spec.SSHKey}} {
		if *p.dst == "" && p.what == "output_dir" {
			return fmt.Errorf("output_dir is empty: want the folder the image is written to, such as \"build\"")
		}
		if *p.dst == "" || p.what == "ssh_private_key" && strings.HasPrefix(*p.dst, "~/") {
			continue // "~/.ssh/id_ed25519" is the home of whoever applies the plan
		}
		if *p.dst, err = localPath(thread, p.what, *p.dst); err != nil {
			return err
		}
	}
	for _, u := range []struct {
		param string
		v     starlark.Value
		dst   starlark.Unpacker
	}{
		{"disk_size", a.diskSize, &spec.DiskSize}, {"memory", a.memory, &spec.Memory},
		{"boot_wait", a.bootWait, &spec.BootWait}, {"ssh_timeout", a.sshTimeout, &spec.SSHTimeout},
		{"shutdown_timeout", a.shutdownTimeout, &spec.ShutdownTimeout},
	} {
		if u.v == nil {
			continue
		}
		if err := u.dst.Unpack(u.v); err != nil {
			return fmt.Errorf("%s: %w", u.param, err)
		}
	}
	if err := checkMachine(spec); err != nil {
		return err
	}
	if spec.HTTPFiles, err = unpackHTTPFiles(a.httpFiles); err != nil {
		return err
	}
	if spec.BootCommand, err = stringList("boot_command", a.bootCommand); err != nil {
		return err
	}
	if err := checkBootCommand(spec.BootCommand, name, spec.HTTPFiles); err != nil {
		return err
	}
	return checkSSH(spec, a)
}

// checkMachine checks the image format and the build VM's hardware.
func checkMachine(spec *Image) error {
	switch {
	case spec.Format != "qcow2" && spec.Format != "raw":
		return fmt.Errorf("format %q: want \"qcow2\" or \"raw\"", spec.Format)
	case spec.Compress && spec.Format != "qcow2":
		return fmt.Errorf("compress = True needs format \"qcow2\": raw images are not compressed")
	case spec.CPUs < 1:
		return fmt.Errorf("cpus %d: want at least 1", spec.CPUs)
	case spec.Accelerator != "auto" && spec.Accelerator != "kvm" && spec.Accelerator != "tcg":
		return fmt.Errorf("accelerator %q: want \"auto\", \"kvm\" or \"tcg\"", spec.Accelerator)
	}
	return nil
}

// checkSSH checks how the builder logs in to the build VM and what it runs
// there.
func checkSSH(spec *Image, a *imageArgs) error {
	switch p := a.sshPassword.(type) {
	case nil, starlark.NoneType:
	case runtime.Secret:
		spec.SSHPassword = &p
	case starlark.String:
		return fmt.Errorf("ssh_password is a plain string: a password written in a script ends up in plans and version control; use a secret, such as ssh_password = secret(\"root_password\")")
	default:
		return fmt.Errorf("ssh_password: got %s, want a secret such as secret(\"root_password\")", p.Type())
	}
	if spec.SSHUsername == "" {
		return fmt.Errorf("ssh_username is empty: want the user the builder logs in as, such as \"root\"")
	}
	if strings.HasSuffix(spec.SSHKey, ".pub") {
		return fmt.Errorf("ssh_private_key %q is a public key: want the private key file (without .pub)", spec.SSHKey)
	}
	if spec.SSHPassword == nil && spec.SSHKey == "" {
		return fmt.Errorf("no SSH credentials: set ssh_password = secret(...) or ssh_private_key = PATH so the builder can log in to provision and shut down the VM")
	}
	if spec.ShutdownCommand == "" {
		return fmt.Errorf("shutdown_command is empty: want a command that powers the VM off, such as \"shutdown -P now\"")
	}
	switch p := a.provision.(type) {
	case nil, starlark.NoneType:
	case starlark.Callable:
		spec.Provision = p.Name()
	default:
		return fmt.Errorf("provision: got %s, want a function called with the build VM's host, such as a role", p.Type())
	}
	return nil
}

// optionalString reads an argument that is a string or None.
func optionalString(param string, v starlark.Value) (string, error) {
	switch v := v.(type) {
	case nil, starlark.NoneType:
		return "", nil
	case starlark.String:
		return string(v), nil
	}
	return "", fmt.Errorf("%s: got %s, want a string", param, v.Type())
}

// stringList reads a list or tuple of strings.
func stringList(param string, v starlark.Value) ([]string, error) {
	iter, ok := v.(starlark.Indexable)
	if !ok || v.Type() == "string" {
		return nil, fmt.Errorf("%s: got %s, want a list of strings", param, v.Type())
	}
	out := make([]string, iter.Len())
	for i := range out {
		s, ok := iter.Index(i).(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: got %s, want a string", param, i, iter.Index(i).Type())
		}
		out[i] = string(s)
	}
	return out, nil
}
