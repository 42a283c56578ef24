package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// RegisterFlags adds a flag to fs for every field of defaults (a role's
// configuration, filled with its defaults) that has a flag tag: named by
// its mapstructure key, with the tag as its usage and the field's value as
// its default. Flags fs already has are left alone, so that a command that
// runs several roles (dev) registers each role's struct in turn. Settings
// without a flag tag are read from the environment and the config file
// only. It panics on a field type it does not know: a programming error.
func RegisterFlags(fs *pflag.FlagSet, defaults any) {
	registerFlags(fs, reflect.ValueOf(defaults))
}

var durationType = reflect.TypeFor[time.Duration]()

func registerFlags(fs *pflag.FlagSet, v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" && f.Type.Kind() == reflect.Struct {
			registerFlags(fs, fv)
			continue
		}
		usage, ok := f.Tag.Lookup("flag")
		if !ok || name == "" || fs.Lookup(name) != nil {
			continue
		}
		switch {
		case f.Type == durationType:
			fs.Duration(name, time.Duration(fv.Int()), usage)
		case f.Type.Kind() == reflect.String:
			fs.String(name, fv.String(), usage)
		case f.Type.Kind() == reflect.Bool:
			fs.Bool(name, fv.Bool(), usage)
		case f.Type.Kind() == reflect.Int:
			fs.Int(name, int(fv.Int()), usage)
		case f.Type.Kind() == reflect.Int16:
			fs.Int16(name, fv.Interface().(int16), usage)
		case f.Type.Kind() == reflect.Int32:
			fs.Int32(name, fv.Interface().(int32), usage)
		case f.Type.Kind() == reflect.Int64:
			fs.Int64(name, fv.Int(), usage)
		case f.Type.Kind() == reflect.Float64:
			fs.Float64(name, fv.Float(), usage)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
			fs.StringSlice(name, fv.Interface().([]string), usage)
		default:
			panic(fmt.Sprintf("config: no flag for %s (%s)", name, f.Type))
		}
	}
}
