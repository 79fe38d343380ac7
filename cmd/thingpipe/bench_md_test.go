package main

import (
	"bytes"
	"testing"
)

func TestMarkdownTable(t *testing.T) {
	var b bytes.Buffer
	tbl := &mdTable{}
	tbl.row("stage", "done")
	tbl.row("archival", 600)
	tbl.write(&b)
	want := "| stage    | done |\n|----------|-----:|\n| archival |  600 |\n\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
