package tasks

import (
	"slices"
	"testing"
)

func TestBatchSizes(t *testing.T) {
	cases := []struct {
		n      int
		serial []string
		want   []int
	}{
		{3, nil, []int{3}},
		{10, []string{"3"}, []int{3, 3, 3, 1}},
		{10, []string{"30%"}, []int{3, 3, 3, 1}},
		{10, []string{"1", "2", "50%"}, []int{1, 2, 5, 2}},
		{2, []string{"10%"}, []int{1, 1}},
		{2, []string{"5"}, []int{2}},
		{0, []string{"1"}, nil},
	}
	for _, c := range cases {
		got, err := batchSizes(c.n, c.serial)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("batchSizes(%d, %q) = %v, %v; want %v", c.n, c.serial, got, err, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "x", "0%", "101%"} {
		if _, err := batchSizes(4, []string{bad}); err == nil {
			t.Errorf("serial %q accepted", bad)
		}
	}
}
