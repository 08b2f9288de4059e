// Package docs checks the documentation a user reads: README.md and docs/*.md.
// Its tests fail when a relative link or an #anchor in them leads nowhere.
package docs
