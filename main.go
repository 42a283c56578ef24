// Command smsctl is an SMS messaging platform in one binary: the API, the
// processor, migrations and a test client.
package main

import (
	"os"

	"github.com/smsctl/smsctl/cmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(cmd.Execute(version))
}
