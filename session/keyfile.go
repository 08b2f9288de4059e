package session

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxKeyFileSize bounds a key file read: a key file is a few lines, and a
// path pointing at something huge must not be read into memory.
const maxKeyFileSize = 64 << 10

// Config fields that hold or name key material, as errors name them.
const (
	fieldKeys     = "encryption_keys"
	fieldKeysFile = "encryption_keys_file"
	fieldHash     = "hash_key"
	fieldHashFile = "hash_key_file"
)

// ParseKeyFile reads the encryption keys file: one id:secret per line, the
// primary first, as `envoy-bff keys generate` prints it. Blank lines and
// everything after a # are ignored (neither IDs nor base64 contain #).
// Every bad line is reported by number; no error repeats a secret.
func ParseKeyFile(data []byte) (KeyList, error) {
	keys, _, err := parseKeyLines(data)
	return keys, err
}

// parseKeyLines is ParseKeyFile that also returns each key's line number.
func parseKeyLines(data []byte) (KeyList, []int, error) {
	var (
		keys  KeyList
		lines []int
		errs  []error
		seen  = map[string]int{}
	)
	for n, line := range keyFileLines(data) {
		id, secret, ok := strings.Cut(line, ":")
		id, secret = strings.TrimSpace(id), strings.TrimSpace(secret)
		switch {
		case !ok || id == "" || secret == "":
			errs = append(errs, fmt.Errorf("line %d: want id:secret", n))
			continue
		case !validKeyID(id):
			errs = append(errs, fmt.Errorf("line %d: id must be 1-%d characters of A-Z a-z 0-9 _ -", n, maxKeyIDLen))
		case seen[id] != 0:
			errs = append(errs, fmt.Errorf("line %d: id %q is already on line %d", n, id, seen[id]))
		default:
			seen[id] = n
		}
		if !isKeySecret(secret) {
			errs = append(errs, fmt.Errorf("line %d: secret must be 32 bytes of base64", n))
		}
		keys = append(keys, Key{ID: id, Secret: secret})
		lines = append(lines, n)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("holds no key (want one id:secret per line)")
	}
	return keys, lines, nil
}

// ParseHashKeyFile reads the hash key file: the base64 secret alone on one
// line; blank lines and everything after a # are ignored.
func ParseHashKeyFile(data []byte) (string, error) {
	var secret string
	count := 0
	for n, line := range keyFileLines(data) {
		count++
		if count > 1 {
			return "", fmt.Errorf("line %d: want the hash key alone on one line", n)
		}
		secret = line
	}
	switch {
	case count == 0:
		return "", errors.New("holds no key (want one line of base64)")
	case !isKeySecret(secret):
		return "", errors.New("must hold 32 bytes of base64")
	}
	return secret, nil
}

// keyFileLines yields each meaningful line with its 1-based number:
// comments cut, spaces trimmed, blank lines skipped; CRLF is accepted.
func keyFileLines(data []byte) func(yield func(int, string) bool) {
	return func(yield func(int, string) bool) {
		for i, raw := range bytes.Split(data, []byte("\n")) {
			if j := bytes.IndexByte(raw, '#'); j >= 0 {
				raw = raw[:j]
			}
			line := strings.TrimSpace(string(raw))
			if line == "" {
				continue
			}
			if !yield(i+1, line) {
				return
			}
		}
	}
}

// keyFile is one read of a key file: its content and what identifies it.
type keyFile struct {
	data  []byte
	stamp fileStamp
	mode  os.FileMode
}

// fileStamp identifies one content of a file; the zero stamp stands for
// "could not be read".
type fileStamp struct {
	size int64
	sum  [sha256.Size]byte
}

// readKeyFile reads a key file of bounded size. Errors carry the path (from
// the config) and the OS's reason, never content.
func readKeyFile(path string) (keyFile, error) {
	f, err := os.Open(path) // follows symlinks, as a Kubernetes Secret volume needs
	if err != nil {
		return keyFile{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return keyFile{}, err
	}
	if !fi.Mode().IsRegular() {
		return keyFile{}, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return keyFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return keyFile{}, fmt.Errorf("%s is larger than %d KiB", path, maxKeyFileSize>>10)
	}
	return keyFile{
		data:  data,
		stamp: fileStamp{size: int64(len(data)), sum: sha256.Sum256(data)},
		mode:  fi.Mode().Perm(),
	}, nil
}

// worldReadable is the warning for a key file any local user can read, or
// "" when its mode is tight enough. Only a warning: a mounted Secret is
// 0644 unless its defaultMode says otherwise, and the container may be the
// only user.
func (f keyFile) worldReadable(field, path string) string {
	if f.mode&0o004 == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %s is readable by every user (mode %04o); make it 0400 or 0600 (a Kubernetes Secret volume: defaultMode: 0400)", field, path, f.mode)
}

// keyMaterial is the key configuration resolved from inline values or files.
type keyMaterial struct {
	keys      KeyList
	keyLines  []int // line numbers of keys when they come from a file
	hashKey   string
	hashField string // the field the hash key came from, for errors

	// keysFailed and hashFailed say an error was already reported, so
	// "required" does not pile on.
	keysFailed, hashFailed bool
	// keysStamp and hashStamp identify the files read, when configured.
	keysStamp, hashStamp fileStamp
	warnings             []string
}

// keyName names key i of the material in an error.
func (m keyMaterial) keyName(i int) string {
	if m.keyLines != nil {
		return fmt.Sprintf("the key on line %d of %s", m.keyLines[i], fieldKeysFile)
	}
	return fmt.Sprintf("%s[%d].secret", fieldKeys, i)
}

// loadKeys resolves each key kind from its inline field or its file,
// requiring at most one of the two. Errors read "<field>: <problem>".
func (c Config) loadKeys() (keyMaterial, []error) {
	m := keyMaterial{hashField: fieldHash}
	var errs []error
	bad := func(field string, err error) { errs = append(errs, fmt.Errorf("%s: %w", field, err)) }
	switch {
	case c.EncryptionKeysFile != "" && len(c.EncryptionKeys) > 0:
		bad(fieldKeysFile, errors.New("set either encryption_keys or encryption_keys_file, not both"))
		m.keysFailed = true
	case c.EncryptionKeysFile != "":
		f, err := readKeyFile(c.EncryptionKeysFile)
		if err == nil {
			m.keysStamp = f.stamp
			m.warnings = appendNonEmpty(m.warnings, f.worldReadable(fieldKeysFile, c.EncryptionKeysFile))
			m.keys, m.keyLines, err = parseKeyLines(f.data)
		}
		if err != nil {
			bad(fieldKeysFile, err)
			m.keysFailed = true
		}
	default:
		m.keys = c.EncryptionKeys
		if kerrs := c.EncryptionKeys.validate(fieldKeys); len(kerrs) > 0 {
			errs = append(errs, kerrs...)
			m.keysFailed = true
		}
	}
	switch {
	case c.HashKeyFile != "" && c.HashKey != "":
		bad(fieldHashFile, errors.New("set either hash_key or hash_key_file, not both"))
		m.hashFailed = true
	case c.HashKeyFile != "":
		m.hashField = fieldHashFile
		f, err := readKeyFile(c.HashKeyFile)
		if err == nil {
			m.hashStamp = f.stamp
			m.warnings = appendNonEmpty(m.warnings, f.worldReadable(fieldHashFile, c.HashKeyFile))
			m.hashKey, err = ParseHashKeyFile(f.data)
		}
		if err != nil {
			bad(fieldHashFile, err)
			m.hashFailed = true
		}
	case c.HashKey != "" && !isKeySecret(c.HashKey):
		bad(fieldHash, errBadSecret)
		m.hashFailed = true
	default:
		m.hashKey = c.HashKey
	}
	return m, errs
}

func appendNonEmpty(list []string, s string) []string {
	if s == "" {
		return list
	}
	return append(list, s)
}
