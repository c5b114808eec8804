// Package stdlib embeds studiorun's Starlark library, which scripts load
// as //stdlib/...: the roles (ops_user, nfs_client, nfs_server) and their
// helpers.
package stdlib

import "embed"

// FS holds the library's files under their paths below stdlib/.
//
//go:embed roles
var FS embed.FS
