// Package kickstart embeds the kickstart templates that scripts render with
// template("//kickstart/<name>.ks", ...).
package kickstart

import "embed"

// FS holds the templates under their file names.
//
//go:embed *.ks
var FS embed.FS
