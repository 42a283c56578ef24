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

// send --wait with a timeout that cannot wait must fail before it sends.
func TestSendRejectsTimeoutBeforeSending(t *testing.T) {
	root := newRoot("test")
	// Nothing listens on port 1: had send posted, the error would be a
	// connection error, not the flag's.
	root.SetArgs([]string{"send", "--api-url", "http://127.0.0.1:1", "--api-key", "k", "--from", "+14155550100", "--to", "+14155552671", "--text", "x", "--wait", "--timeout", "-1s"})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--timeout: must be more than 0") {
		t.Errorf("error %v, want one naming --timeout", err)
	}
}
