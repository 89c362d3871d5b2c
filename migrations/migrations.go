// Package migrations holds sync-all's database schema as numbered, forward-only SQL files
// (0001_init.sql, 0002_...) embedded in the binary, in the layout tern's migrate package reads.
//
// A migration that has landed is never edited: fix forward with a new file, because databases in
// the field already recorded the old one as applied.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var files embed.FS

// FS is the embedded migration files, named NNNN_description.sql, at its root. It is exposed as a
// plain fs.FS (read-only by construction) so the store hands it straight to tern.
var FS fs.FS = files
