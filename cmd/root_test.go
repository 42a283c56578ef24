package cmd

import (
	"io"
	"strings"
	"testing"
)

// A typo in a role or subcommand must fail: cobra's default for a command
// that only groups others is to print help and succeed.
func TestGroupCommandsRejectMissingAndUnknownSubcommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "apl"}, `unknown command "apl" for "smsctl serve" (one of: api, processor)`},
		{[]string{"serve"}, `"smsctl serve" needs a command: one of api, processor`},
		{[]string{"migrate", "sideways"}, `unknown command "sideways" for "smsctl migrate" (one of: down, status, up)`},
		{[]string{"apikey"}, `"smsctl apikey" needs a command: one of create, list, revoke`},
	} {
		root := newRoot("test")
		root.SetArgs(tc.args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("smsctl %s: error %v, want one containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestGroupCommandHelpStillWorks(t *testing.T) {
	root := newRoot("test")
	var out strings.Builder
	root.SetArgs([]string{"serve", "--help"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatalf("smsctl serve --help: %v", err)
	}
	if !strings.Contains(out.String(), "processor") {
		t.Errorf("smsctl serve --help printed no list of roles:\n%s", out.String())
	}
}
