package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// durationSetting is a time.Duration field of a role's configuration.
type durationSetting struct {
	key   string
	index []int  // for reflect.Value.FieldByIndex
	usage string // the flag's usage: --help, where what 0 means is said
}

// durationSettings finds every time.Duration setting of struct type t,
// squashed structs included, so a duration added later is tested too.
func durationSettings(t reflect.Type, prefix []int) []durationSetting {
	var out []durationSetting
	for i := range t.NumField() {
		f := t.Field(i)
		index := append(append([]int(nil), prefix...), i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		switch {
		case opts == "squash" && f.Type.Kind() == reflect.Struct:
			out = append(out, durationSettings(f.Type, index)...)
		case f.Type == reflect.TypeFor[time.Duration]() && name != "":
			out = append(out, durationSetting{key: name, index: index, usage: f.Tag.Get("flag")})
		}
	}
	return out
}

// TestEveryDurationHasAMinimum walks every time.Duration setting of both
// roles and sets it, through its SMS_* variable as a user would, to -1ns
// and to 1ns: each must be refused with an error naming the variable and
// the key. 0 is refused too, except where the flag's usage says what 0
// means ("(0: ..."); those settings all take 0 together.
func TestEveryDurationHasAMinimum(t *testing.T) {
	roles := []struct {
		name string
		cfg  func() any // a pointer to a valid configuration
	}{
		{"api", func() any { c := validAPI(); return &c }},
		{"processor", func() any { c := validProcessor(); return &c }},
	}
	for _, role := range roles {
		settings := durationSettings(reflect.TypeOf(role.cfg()).Elem(), nil)
		if len(settings) < 5 {
			t.Fatalf("%s: found only %d duration settings", role.name, len(settings))
		}
		// validate loads cfg with the environment t has and validates it.
		validate := func(t *testing.T, s durationSetting, want time.Duration) error {
			t.Helper()
			cfg := role.cfg()
			if err := Load(pflag.NewFlagSet("test", pflag.ContinueOnError), cfg); err != nil {
				t.Fatal(err)
			}
			if got := reflect.ValueOf(cfg).Elem().FieldByIndex(s.index).Interface(); got != want {
				t.Fatalf("%s read as %v, want %v", named(s.key), got, want)
			}
			return cfg.(interface{ Validate() error }).Validate()
		}
		var zeroOK []durationSetting
		for _, s := range settings {
			env := strings.TrimSuffix(named(s.key), " ("+s.key+")")
			for _, value := range []time.Duration{-time.Nanosecond, time.Nanosecond, 0} {
				if value == 0 && strings.Contains(s.usage, "(0:") {
					zeroOK = append(zeroOK, s)
					continue
				}
				t.Run(role.name+"/"+s.key+"="+value.String(), func(t *testing.T) {
					t.Setenv(env, value.String())
					// Its own minimum's error, not only another rule's that
					// names it too (sim-max-delay below sim-min-delay).
					err := validate(t, s, value)
					if err == nil || !ownMinimum(err, named(s.key)) {
						t.Errorf("got %v, want %s's minimum (\"%s must be ... a duration of at least\")", err, s.key, named(s.key))
					}
				})
			}
		}
		t.Run(role.name+"/documented zeros", func(t *testing.T) {
			for _, s := range zeroOK {
				t.Setenv(strings.TrimSuffix(named(s.key), " ("+s.key+")"), "0s")
			}
			for _, s := range zeroOK {
				if err := validate(t, s, 0); err != nil {
					t.Errorf("0 for %v, which their usage documents, refused: %v", zeroOK, err)
				}
			}
		})
	}
}

// TestReceiptTimeoutOutlastsSimulatorReceipts: with the simulator, a
// receipt timeout no longer than its longest receipt delay would expire
// messages it delivers; an SMSC's receipts are not the simulator's.
func TestReceiptTimeoutOutlastsSimulatorReceipts(t *testing.T) {
	c := validProcessor()
	c.SimReceiptMaxDelay = time.Minute
	for _, timeout := range []time.Duration{30 * time.Second, time.Minute} {
		c.ReceiptTimeout = timeout
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), named("smpp-receipt-timeout")+" must be longer than SMS_SIM_RECEIPT_MAX_DELAY") {
			t.Errorf("timeout %s, simulator receipts up to 1m: got %v, want an error naming both settings", timeout, err)
		}
	}
	c.ReceiptTimeout = time.Minute + time.Second
	if err := c.Validate(); err != nil {
		t.Errorf("timeout longer than the receipt delay refused: %v", err)
	}
	c.ReceiptTimeout = 30 * time.Second
	c.SimReceipts = false
	if err := c.Validate(); err != nil {
		t.Errorf("simulator without receipts: %v", err)
	}
	c.SimReceipts, c.Carrier.Carrier, c.Addr, c.SystemID = true, "smpp", "smsc:2775", "smsctl"
	if err := c.Validate(); err != nil {
		t.Errorf("carrier smpp, whose receipts are not the simulator's: %v", err)
	}
}

// ownMinimum reports whether err has the line of name's minimum, as
// atLeast and zeroOrAtLeast write it.
func ownMinimum(err error, name string) bool {
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(line, name+" must be") && strings.Contains(line, "a duration of at least") {
			return true
		}
	}
	return false
}
