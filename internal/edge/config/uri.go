package config

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrUnsupported is wrapped by errors about a feature Muster's iotedge does
// not implement yet (PKCS#11 URIs, TPM, dynamic certificate issuance, …).
var ErrUnsupported = errors.New("not supported yet by Muster's iotedge")

// uriSchemePattern matches a URI scheme of two characters or more (one
// letter followed by a colon is a Windows drive, not a scheme).
var uriSchemePattern = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.\-]+):`)

// resolveFileRef turns a file reference of the configuration into an
// absolute local path. A reference is a file URI (file:///abs/path; on
// Windows file:///C:/path or file://server/share/path) or, when plainOK, an
// absolute path. The error does not name the key; callers add it.
func resolveFileRef(ref string, plainOK bool) (string, error) {
	if strings.TrimSpace(ref) == "" {
		return "", errors.New("is empty")
	}
	m := uriSchemePattern.FindStringSubmatch(ref)
	if m == nil {
		if !plainOK {
			return "", fmt.Errorf("%q is not a URI; give a file URI such as %s", ref, exampleFileURI)
		}
		if !filepath.IsAbs(ref) {
			return "", fmt.Errorf("%q is a relative path; give an absolute path or a file URI such as %s", ref, exampleFileURI)
		}
		return filepath.Clean(ref), nil
	}
	switch scheme := strings.ToLower(m[1]); scheme {
	case "file":
	case "pkcs11":
		return "", fmt.Errorf("PKCS#11 URIs are %w; give a file URI such as %s", ErrUnsupported, exampleFileURI)
	default:
		return "", fmt.Errorf("URI scheme %q is not supported; give a file URI such as %s", scheme, exampleFileURI)
	}
	u, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid URI: %w", ref, errors.Unwrap(err))
	}
	if u.Opaque != "" {
		return "", fmt.Errorf("%q is a relative file URI; a file URI is absolute: %s", ref, exampleFileURI)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("file URI %q must not have a user, query or fragment", ref)
	}
	p, err := fileURIPath(u)
	if err != nil {
		return "", fmt.Errorf("file URI %q: %w", ref, err)
	}
	return p, nil
}

// unixFileURIPath is the POSIX reading of a parsed file URI: the host is
// empty or localhost and the path is absolute.
func unixFileURIPath(u *url.URL) (string, error) {
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return "", fmt.Errorf("names host %q; a local file URI has three slashes (file:///absolute/path)", u.Host)
	}
	if !strings.HasPrefix(u.Path, "/") {
		return "", errors.New("has a relative path; a local file URI has three slashes (file:///absolute/path)")
	}
	return path.Clean(u.Path), nil
}

// windowsFileURIPath is the Windows reading of a parsed file URI:
// file:///C:/dir/file is C:\dir\file and file://server/share/file is the
// UNC path \\server\share\file.
func windowsFileURIPath(u *url.URL) (string, error) {
	p := u.Path
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		if strings.Trim(p, "/") == "" {
			return "", fmt.Errorf("names host %q but no share and file", u.Host)
		}
		return `\\` + u.Host + strings.ReplaceAll(path.Clean(p), "/", `\`), nil
	}
	if len(p) >= 4 && p[0] == '/' && isASCIILetter(p[1]) && p[2] == ':' && p[3] == '/' {
		return strings.ReplaceAll(path.Clean(p[1:]), "/", `\`), nil
	}
	return "", errors.New("has no drive letter; on Windows a file URI is file:///C:/path")
}

// unixPathToFileURI renders an absolute POSIX path as a file URI.
func unixPathToFileURI(p string) string {
	return (&url.URL{Scheme: "file", Path: p}).String()
}

// windowsPathToFileURI renders an absolute Windows path (C:\dir\file or
// \\server\share\file) as a file URI.
func windowsPathToFileURI(p string) string {
	s := strings.ReplaceAll(p, `\`, "/")
	if rest, ok := strings.CutPrefix(s, "//"); ok {
		host, share, _ := strings.Cut(rest, "/")
		return (&url.URL{Scheme: "file", Host: host, Path: "/" + share}).String()
	}
	return (&url.URL{Scheme: "file", Path: "/" + s}).String()
}

func isASCIILetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }
