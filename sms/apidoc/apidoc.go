// Package apidoc ships the OpenAPI document of smsctl's HTTP API and an
// interactive documentation page (Swagger UI, vendored so it works offline)
// inside the binary. Register serves them on an echo router.
package apidoc

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"

	"github.com/smsctl/smsctl/platform"
)

//go:embed openapi.yaml
var spec []byte

//go:embed docs.html
var docsHTML []byte

// assets holds the vendored swagger-ui-dist files, served under /docs/assets/.
//
//go:embed assets
var assets embed.FS

// Routes served by Register.
const (
	SpecYAMLPath = "/openapi.yaml"
	SpecJSONPath = "/openapi.json"
	DocsPath     = "/docs"
	AssetsPrefix = "/docs/assets/"
)

const (
	// The spec and the page change with the binary, so clients revalidate
	// them (cheaply, with ETag) on every load.
	cacheRevalidate = "no-cache"
	// Assets are vendored, versioned third-party files referenced with a
	// ?v=<version> query by docs.html.
	cacheImmutable = "public, max-age=31536000, immutable"
)

// Spec returns the OpenAPI document (YAML). The returned slice is a copy.
func Spec() []byte {
	return bytes.Clone(spec)
}

// Register mounts GET /openapi.yaml, GET /openapi.json (converted from the
// YAML once, here), GET /docs and the page's static assets under
// GET /docs/assets/ on e. It fails only if the embedded files are broken.
// The routes need no authentication.
func Register(e *echo.Echo) error {
	jsonSpec, err := yamlToJSON(spec)
	if err != nil {
		return fmt.Errorf("apidoc: converting openapi.yaml to JSON: %w", err)
	}
	files, err := loadAssets()
	if err != nil {
		return fmt.Errorf("apidoc: loading docs assets: %w", err)
	}

	platform.GET(e, SpecYAMLPath, newResource(spec, "application/yaml; charset=utf-8", cacheRevalidate).serve)
	platform.GET(e, SpecJSONPath, newResource(jsonSpec, echo.MIMEApplicationJSON, cacheRevalidate).serve)
	platform.GET(e, DocsPath, newResource(docsHTML, echo.MIMETextHTMLCharsetUTF8, cacheRevalidate).serve)
	platform.GET(e, AssetsPrefix+"*", func(c echo.Context) error {
		r, ok := files[c.Param("*")]
		if !ok {
			return echo.ErrNotFound
		}
		return r.serve(c)
	})
	return nil
}

// resource is an in-memory response body with its caching headers.
type resource struct {
	body         []byte
	contentType  string
	cacheControl string
	etag         string
}

func newResource(body []byte, contentType, cacheControl string) *resource {
	sum := sha256.Sum256(body)
	return &resource{
		body:         body,
		contentType:  contentType,
		cacheControl: cacheControl,
		etag:         `"` + hex.EncodeToString(sum[:16]) + `"`,
	}
}

func (r *resource) serve(c echo.Context) error {
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, r.cacheControl)
	h.Set("ETag", r.etag)
	h.Set(echo.HeaderXContentTypeOptions, "nosniff")
	if etagMatches(c.Request().Header.Get("If-None-Match"), r.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, r.contentType, r.body)
}

// etagMatches reports whether an If-None-Match header value matches etag,
// using the weak comparison RFC 9110 prescribes for If-None-Match.
func etagMatches(ifNoneMatch, etag string) bool {
	for _, tag := range strings.Split(ifNoneMatch, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// loadAssets reads the embedded assets directory into resources keyed by file
// name.
func loadAssets() (map[string]*resource, error) {
	entries, err := fs.ReadDir(assets, "assets")
	if err != nil {
		return nil, err
	}
	files := make(map[string]*resource, len(entries))
	for _, entry := range entries {
		if entry.IsDir() {
			continue
		}
		name := entry.Name()
		body, err := assets.ReadFile("assets/" + name)
		if err != nil {
			return nil, err
		}
		files[name] = newResource(body, assetContentType(name), cacheImmutable)
	}
	if len(files) == 0 {
		return nil, errors.New("no assets embedded")
	}
	return files, nil
}

func assetContentType(name string) string {
	switch ext := path.Ext(name); ext {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case "", ".txt":
		return echo.MIMETextPlainCharsetUTF8 // LICENSE, NOTICE
	default:
		if t := mime.TypeByExtension(ext); t != "" {
			return t
		}
		return echo.MIMEOctetStream
	}
}

// maxDepth bounds the nesting yamlToJSON follows, which also stops alias
// cycles.
const maxDepth = 200

// yamlToJSON converts a YAML document to indented JSON, keeping the order of
// mapping keys so that the JSON reads like the YAML.
func yamlToJSON(in []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(in, &doc); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc, 0); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func writeJSON(buf *bytes.Buffer, n *yaml.Node, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("line %d: nested deeper than %d levels", n.Line, maxDepth)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return fmt.Errorf("expected one YAML document, found %d", len(n.Content))
		}
		return writeJSON(buf, n.Content[0], depth+1)
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias, depth+1)
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, item, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case yaml.MappingNode:
		seen := make(map[string]bool, len(n.Content)/2)
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.AliasNode {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				return fmt.Errorf("line %d: mapping keys must be plain scalars", n.Content[i].Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
			if i > 0 {
				buf.WriteByte(',')
			}
			key, _ := json.Marshal(k.Value) // marshalling a string cannot fail
			buf.Write(key)
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.ScalarNode:
		var v any
		switch tag := n.ShortTag(); tag {
		case "!!str", "!!timestamp":
			v = n.Value // JSON has no timestamps: keep the text as written
		case "!!null":
			v = nil
		case "!!bool", "!!int", "!!float":
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
		default:
			return fmt.Errorf("line %d: unsupported YAML tag %s", n.Line, tag)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		buf.Write(b)
		return nil
	default:
		return fmt.Errorf("line %d: unexpected YAML node kind %d", n.Line, n.Kind)
	}
}
