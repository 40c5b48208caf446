// Command argolua runs an Argo CD resource health check (a health.lua script) against one object,
// the way Argo CD's application controller does (argo-cd util/lua: VM.runLua and
// VM.ExecuteHealthLua), and prints the result:
//
//	argolua [--open-libs] SCRIPT.lua < object.(json|yaml)
//	{"status":"Healthy","message":"..."}
//
// What is mirrored from Argo CD:
//   - gopher-lua (Lua 5.1). Without --open-libs (a script from argocd-cm, where
//     resource.customizations.useOpenLibs.<group_kind> is unset) only the package, base and table
//     libraries and a "safe" os library (os.time and os.date only; require("os") gets the same)
//     are opened: no string, math, io or debug library. --open-libs opens gopher-lua's whole
//     standard library first, as Argo CD does for its built-in scripts and for useOpenLibs: true.
//   - The global obj is the object converted as Argo CD's decodeValue converts an unstructured
//     object: JSON numbers become Lua numbers, arrays become sequences (nulls in arrays are
//     dropped, as LTable.Append drops nil), objects become tables with string keys, null becomes nil.
//   - The script runs with a 1 s timeout. Its last value must be a table; it is encoded to JSON
//     with layeh.com/gopher-json and read as {status, message}. A status outside Healthy,
//     Progressing, Degraded, Suspended, Missing, Unknown becomes Unknown with Argo CD's message
//     "Lua returned an invalid health status".
//
// Exit status: 0 when the script returned a health status; 1 when it failed or returned no table
// (Argo CD would then report the resource's health as Unknown with that error), or on bad input.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

const usage = "usage: argolua [--open-libs] SCRIPT.lua < object.json|object.yaml"

type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

func main() {
	openLibs := false
	var args []string
	for _, a := range os.Args[1:] {
		switch a {
		case "--open-libs":
			openLibs = true
		case "-h", "--help":
			fmt.Println(usage)
			return
		default:
			args = append(args, a)
		}
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(1)
	}
	script, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argolua: reading the script:", err)
		os.Exit(1)
	}
	obj, err := readObject(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argolua:", err)
		os.Exit(1)
	}
	hs, err := executeHealthLua(obj, string(script), openLibs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argolua: the health script failed (Argo CD would report Unknown):", err)
		os.Exit(1)
	}
	out, err := json.Marshal(hs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argolua:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func readObject(in io.Reader) (map[string]interface{}, error) {
	raw, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("stdin is neither JSON nor YAML: %w", err)
	}
	// As Argo CD's cluster cache holds it (an unstructured object): integers as int64, other
	// numbers as float64.
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding the object: %w", err)
	}
	obj, ok := numbers(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("stdin is not one Kubernetes object (a JSON or YAML mapping)")
	}
	if obj["kind"] == nil || obj["apiVersion"] == nil {
		return nil, fmt.Errorf("the object has no apiVersion or kind")
	}
	return obj, nil
}

// numbers converts json.Number as apimachinery's unstructured JSON decoding does.
func numbers(v interface{}) interface{} {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []interface{}:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]interface{}:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return v
}

func executeHealthLua(obj map[string]interface{}, script string, openLibs bool) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			return nil, fmt.Errorf("opening the %q library: %w", pair.n, err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	js, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	hs := &healthStatus{}
	if err := json.Unmarshal(js, hs); err != nil {
		return nil, err
	}
	switch hs.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return hs, nil
	}
	return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

// decodeValue converts as Argo CD's util/lua decodeValue does.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// The "safe" os library: time and date only, as Argo CD's oslib_safe.go. Argo CD's OpenSafeOs
// registers these two functions into the module named lua.TabLibName ("table"), not "os": without
// open libraries a script has no global os, only table.time/table.date and require("os").
// Mirrored as it is, so a script that works here works there.
var osFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, osFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), osFuncs))
	return 1
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	tbl := l.CheckTable(1)
	field := func(key string, def int) int {
		if n, ok := tbl.RawGetString(key).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}

func osDate(l *lua.LState) int {
	t := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t = t.UTC()
			format = strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			ret := l.NewTable()
			for k, v := range map[string]int{"year": t.Year(), "month": int(t.Month()), "day": t.Day(),
				"hour": t.Hour(), "min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0} {
				ret.RawSetString(k, lua.LNumber(v))
			}
			ret.RawSetString("isdst", lua.LFalse)
			l.Push(ret)
			return 1
		}
	}
	l.Push(lua.LString(strftime(t, format)))
	return 1
}

// strftime understands the conversions gopher-lua's os.date does; others are copied through.
var strftimeLayouts = map[byte]string{
	'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i == len(format)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		switch f := format[i]; {
		case f == '%':
			b.WriteByte('%')
		case f == 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case strftimeLayouts[f] != "":
			b.WriteString(t.Format(strftimeLayouts[f]))
		default:
			b.WriteByte('%')
			b.WriteByte(f)
		}
	}
	return b.String()
}
