package kmsmodules

import (
	"context"

	"github.com/kmsctl/kmsctl/tasks"
)

// EditWithoutPlan sends kms_remove_node's edit of id on env's host without
// its plan, as if the ID had gone between the plan and the edit.
func EditWithoutPlan(ctx context.Context, o Options, env *tasks.Env, id uint32) (tasks.Result, error) {
	m := removeNodeModule{&mods{o: o}}
	a, err := m.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	return m.edit(ctx, a, removal{id: id})
}

// CheckWritten is kms_backup's read-back check of the pair at dest.
func CheckWritten(dest string) error { return checkWritten(dest) }
