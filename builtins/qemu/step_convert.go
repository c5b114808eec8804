package qemu

import (
	"context"
	"errors"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// stepConvert writes the output image with qemu-img convert: the working
// disk flattened (an overlay's base included) into format, compressed
// with compress = True, unused blocks dropped. Progress comes from
// qemu-img -p.
type stepConvert struct{}

func (stepConvert) name() string { return "convert the image" }

func (stepConvert) run(ctx context.Context, b *build) error {
	b.output = filepath.Join(b.tmpDir, b.spec.OutputFile)
	// Progress counts bytes: qemu-img's percentage of the disk's virtual
	// size.
	size := int64(b.spec.DiskSize) << 20
	w := &imgProgress{report: func(done int64) {
		b.rep.Progress(b.addr, "converting the image", size/10000*done, size)
	}}
	_, err := b.tools.Img(ctx, w, convertArgs(b.disk, b.output, b.spec.Format, b.spec.Compress)...)
	return err
}

// cleanup: the output is in the build folder until it is published.
func (stepConvert) cleanup(*build) {}

// imgProgress reads qemu-img -p's "(12.34/100%)" as it comes.
type imgProgress struct {
	last   int64
	report func(done int64)
}

func (p *imgProgress) Write(b []byte) (int, error) {
	if v, ok := parseImgProgress(string(b)); ok && v != p.last {
		p.last = v
		p.report(v)
	}
	return len(b), nil
}

// isExitError reports whether err is a remote command's exit status.
func isExitError(err error) bool {
	var e *ssh.ExitError
	return errors.As(err, &e)
}
