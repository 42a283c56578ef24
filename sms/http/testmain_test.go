package http

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	// The formats the spec uses, checked on every response the contract
	// tests receive (date-time is built in).
	openapi3.DefineStringFormat("uuid", openapi3.FormatOfStringForUUIDOfRFC9562)
	openapi3.DefineStringFormatCallback("uri-reference", func(s string) error {
		_, err := url.Parse(s)
		return err
	})
	// The documentation page is text the spec types as a string (kin-openapi
	// has no decoder for HTML); the YAML document is an object.
	asText := func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		data, err := io.ReadAll(body)
		return string(data), err
	}
	openapi3filter.RegisterBodyDecoder("text/html", asText)
	openapi3filter.RegisterBodyDecoder("application/yaml", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		var v map[string]any
		err := yaml.NewDecoder(body).Decode(&v)
		return v, err
	})
	if os.Getenv("SMS_TEST_NO_GOLEAK") != "" {
		os.Exit(m.Run())
	}
	// Every test stops what it started: the writer, the HTTP server, the
	// database pools, Kafka clients and clusters.
	goleak.VerifyTestMain(m)
}
