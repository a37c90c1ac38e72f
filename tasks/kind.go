package tasks

import (
	"reflect"
	"time"
)

// kindOf names the kind of a decoded value in the user's words ("a list",
// "a mapping", "a string", "a number", "a boolean", "nothing") for error
// messages, instead of a Go type name such as []interface {}.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case time.Duration:
		return "a duration"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Pointer:
		if rv.IsNil() {
			return "nothing"
		}
		return kindOf(rv.Elem().Interface())
	}
	return "an unsupported value"
}
