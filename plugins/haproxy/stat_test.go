package haproxy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fixtures were captured from a real HAProxy 2.6 with web2 drained,
// web3 in maintenance, web1 at weight 3, old1 failing its checks (L4CON)
// and old2 without checks.
func TestParseStatFixture(t *testing.T) {
	tbl, err := parseStat(readFixture(t, "show_stat.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if tbl.header[0] != "pxname" || tbl.col("uweight") < 0 {
		t.Fatalf("header = %v", tbl.header[:3])
	}
	got, err := tbl.servers()
	if err != nil {
		t.Fatal(err)
	}
	want := []statServer{
		{backend: "app", server: "web1", status: "UP", checkStatus: "L7OK", weight: 3},
		{backend: "app", server: "web2", status: "DRAIN", checkStatus: "L7OK", weight: 5},
		{backend: "app", server: "web3", status: "MAINT", weight: 1},
		{backend: "legacy", server: "old1", status: "DOWN", checkStatus: "L4CON", weight: 1},
		{backend: "legacy", server: "old2", status: "no check", weight: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("servers:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseStatCounters(t *testing.T) {
	in := "# pxname,svname,scur,stot,status,weight,type,\n" +
		"app,web1,4,17,UP,2,2,\n" +
		"app,BACKEND,4,17,UP,2,1,\n" +
		"\"we,ird\",\"sv\"\"1\",0,0,\"no check\",1,2,\n\n"
	tbl, err := parseStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tbl.servers()
	if err != nil {
		t.Fatal(err)
	}
	want := []statServer{
		{backend: "app", server: "web1", status: "UP", weight: 2, sessions: 4, total: 17},
		{backend: "we,ird", server: `sv"1`, status: "no check", weight: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseStatErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "want a header line starting with"},
		{"error answer", "Permission denied\n\n", `got "Permission denied"`},
		{"header only hash", "# \n", "want a header line, got nothing"},
		{"missing column", "# pxname,svname,status\napp,web1,UP\n", `no "scur" column`},
		{"short record", "# pxname,svname,status,scur\napp,web1,UP\n", "line 2"},
		{"bad counter", "# pxname,svname,status,scur,type\napp,web1,UP,many,2\n", `column scur: want a non-negative integer, got "many"`},
		{"negative counter", "# pxname,svname,status,scur,type\napp,web1,UP,-1,2\n", "non-negative"},
		{"control char", "# pxname,svname,status,scur\napp,\"we\rb\",UP,0\n", "control character"},
		{"bare quote", "# pxname,svname,status,scur\napp,we\"b,UP,0\n", "line 2"},
		{"empty server name", "# pxname,svname,status,scur,type\napp,,UP,0,2\n", "empty pxname or svname"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, err := parseStat([]byte(tt.in))
			if err == nil {
				_, err = tbl.servers()
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseServersStateFixture(t *testing.T) {
	got, err := parseServersState(readFixture(t, "show_servers_state.txt"))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		b, s, forced, effective string
		w                       int64
	}
	var rows []row
	for _, s := range got {
		rows = append(rows, row{s.backend, s.server, s.forced(), s.effective(), s.uweight})
	}
	want := []row{
		{"app", "web1", "ready", "ready", 3},
		{"app", "web2", "drain", "drain", 5},
		{"app", "web3", "maint", "maint", 1},
		{"legacy", "old1", "ready", "ready", 1},
		{"legacy", "old2", "ready", "ready", 1},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("got %+v\nwant %+v", rows, want)
	}
}

func TestAdminStates(t *testing.T) {
	tests := []struct {
		admin             int64
		forced, effective string
	}{
		{0, "ready", "ready"},
		{admConfigMaint, "ready", "ready"}, // "disabled" in the config, then "state ready"
		{admConfigMaint | admForcedMaint, "maint", "maint"},
		{admForcedDrain, "drain", "drain"},
		{admInheritedMaint, "ready", "maint"},
		{admInheritedDrain, "ready", "drain"},
		{admResolvMaint, "ready", "maint"},
		{admHostMaint | admForcedDrain, "drain", "maint"},
	}
	for _, tt := range tests {
		s := serverState{admin: tt.admin}
		if s.forced() != tt.forced || s.effective() != tt.effective {
			t.Errorf("admin %#x: forced %s effective %s, want %s %s", tt.admin, s.forced(), s.effective(), tt.forced, tt.effective)
		}
	}
}

func TestParseServersStateErrors(t *testing.T) {
	hdr := "# be_id be_name srv_id srv_name srv_admin_state srv_uweight\n"
	tests := []struct{ name, in, want string }{
		{"empty", "", "want format version 1"},
		{"version 2", "2\n" + hdr, "want format version 1"},
		{"error answer", "Can't find backend.\n\n", "want format version 1"},
		{"no header", "1\n3 app 1 web1 0 1\n", "header line"},
		{"missing column", "1\n# be_id be_name srv_id srv_name\n", `no "srv_admin_state" column`},
		{"short line", "1\n" + hdr + "3 app 1 web1 0\n", "line 3: want 6 fields"},
		{"bad admin", "1\n" + hdr + "3 app 1 web1 x 1\n", "srv_admin_state"},
		{"bad weight", "1\n" + hdr + "3 app 1 web1 0 -4\n", "srv_uweight"},
		{"control", "1\n" + hdr + "3 app 1 web\x7f1 0 1\n", "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServersState([]byte(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a *ParseError containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParseStat feeds arbitrary socket bytes to the "show stat" parser: it
// must not panic, and what it accepts must survive a marshal and re-parse
// unchanged, server extraction included.
func FuzzParseStat(f *testing.F) {
	f.Add(readFixture(f, "show_stat.csv"))
	f.Add([]byte("# pxname,svname,scur,stot,status,weight,type,\napp,web1,4,17,UP,2,2,\n\n"))
	f.Add([]byte("# pxname,svname,status,scur\n\"a,b\",\"c\"\"d\",UP,0\n"))
	f.Add([]byte("Permission denied\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tbl, err := parseStat(b)
		if err != nil {
			return
		}
		for _, r := range tbl.rows {
			if len(r) != len(tbl.header) {
				t.Fatalf("record with %d fields, header has %d", len(r), len(tbl.header))
			}
		}
		servers, serr := tbl.servers()
		again, err := parseStat(tbl.marshal())
		if err != nil {
			t.Fatalf("re-parse of marshalled table: %v\n%q", err, tbl.marshal())
		}
		if !reflect.DeepEqual(tbl, again) {
			t.Fatalf("round trip changed the table:\n%q\n%q", tbl, again)
		}
		servers2, serr2 := again.servers()
		if (serr == nil) != (serr2 == nil) || !reflect.DeepEqual(servers, servers2) {
			t.Fatalf("servers differ after round trip: %v %v", serr, serr2)
		}
		if !bytes.Equal(tbl.marshal(), again.marshal()) {
			t.Fatal("marshal is not stable")
		}
	})
}

// FuzzParseServersState feeds arbitrary socket bytes to the "show servers
// state" parser: it must not panic and accepted lines have names.
func FuzzParseServersState(f *testing.F) {
	f.Add(readFixture(f, "show_servers_state.txt"))
	f.Add([]byte("1\n# be_id be_name srv_id srv_name srv_admin_state srv_uweight\n3 app 1 web1 8 1\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		states, err := parseServersState(b)
		if err != nil {
			return
		}
		for _, s := range states {
			if s.backend == "" || s.server == "" || s.admin < 0 || s.uweight < 0 {
				t.Fatalf("accepted %+v", s)
			}
			_, _ = s.forced(), s.effective()
		}
	})
}
