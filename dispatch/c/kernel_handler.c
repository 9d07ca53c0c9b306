/* The kernel's own redirection logic in C, and its two floors, in the per-site loop shape of
 * dispatch's loops.rs: 8 sites, each called from its own call instruction, the loop's sum
 * returned. Built by dispatch/build.rs with the system C compiler at -O2; wrapped by
 * dispatch/src/kernel_c.rs; measured beside the Rust strategies by the harness (its fidelity
 * check) and counted by the gungraun gate.
 *
 * - kh_handler_loop: klp_ftrace_handler() of kernel/livepatch/patch.c (v6.x) over the
 *   kernel's own data layout: a klp_ops per patched function whose func_stack is a list_head of
 *   klp_funcs (newest first), the func's transition and nop flags, the calling task's
 *   patch_state. Each step below quotes the kernel line it stands for.
 * - kh_fnptr_loop: one relaxed function pointer per site (the suite's `fnptr`).
 * - kh_direct_loop: a direct call per site (the suite's `direct`).
 *
 * What is left out of the handler, and why:
 * - ftrace_test_recursion_trylock()/unlock(): the recursion guard, left out by the Rust `klp`
 *   too (its read path cannot re-enter itself), so that both sides measure the same steps.
 * - ftrace_regs_set_instruction_pointer(fregs, func->new_func): ftrace resumes at new_func after
 *   the handler; here the handler returns the function and the loop calls it, as the Rust
 *   read paths do. "goto unlock" (the original runs) returns the site's original.
 *
 * Only readers live here; sites are set up before any loop runs (kh_new, kh_push), from one
 * thread, and then only read, so the writer's barriers (smp_wmb in klp_init_transition and
 * __klp_enable_patch) have no counterpart to pair with in this file. The reader's smp_rmb() are
 * kept where the kernel has them: on x86 they are compiler barriers, which is what they cost.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* dispatch's `Code`: extern "C" fn(u64) -> u64. */
typedef uint64_t (*code_t)(uint64_t);

#define KH_SITES 8
/* Funcs per site's stack: enough for a replace over two stacked patches. */
#define KH_DEPTH 4

/* include/linux/compiler.h, include/asm-generic/barrier.h and arch/x86/include/asm/barrier.h as
 * they read on x86-64: READ_ONCE is a volatile access, smp_rmb() a compiler barrier (x86 does
 * not reorder loads with loads). */
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define barrier() __asm__ __volatile__("" ::: "memory")
#define smp_rmb() barrier()
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* include/linux/types.h */
struct list_head {
	struct list_head *next, *prev;
};

/* include/linux/rculist.h: list_entry_rcu() and list_first_or_null_rcu(). */
#define list_entry_rcu(ptr, type, member) container_of(READ_ONCE(ptr), type, member)
#define list_first_or_null_rcu(ptr, type, member)                                              \
	({                                                                                     \
		struct list_head *__ptr = (ptr);                                               \
		struct list_head *__next = READ_ONCE(__ptr->next);                             \
		likely(__ptr != __next) ? list_entry_rcu(__next, type, member) : NULL;         \
	})

/* include/linux/livepatch.h: struct klp_func, the fields the handler reads (and their order). */
struct klp_func {
	code_t new_func;
	struct list_head stack_node;
	bool nop;
	bool patched;
	bool transition;
};

/* kernel/livepatch/patch.h: struct klp_ops, one per patched function. `orig` is what runs when
 * the handler does not redirect (ftrace returns into the original function). */
struct klp_ops {
	struct list_head func_stack;
	code_t orig;
};

/* include/linux/livepatch.h: KLP_TRANSITION_{IDLE,UNPATCHED,PATCHED}. */
enum { KLP_TRANSITION_IDLE = -1, KLP_TRANSITION_UNPATCHED = 0, KLP_TRANSITION_PATCHED = 1 };

/* The part of task_struct the handler reads (`current->patch_state`), and a count standing for
 * WARN_ON_ONCE(patch_state == KLP_TRANSITION_IDLE). Each task (thread) has its own. */
struct kh_task {
	int patch_state;
	uint64_t idle_warnings;
};

/* Everything the loops read: 8 sites of each kind. Allocated by kh_new, one per user. */
struct kh {
	struct klp_ops ops[KH_SITES];
	struct klp_func funcs[KH_SITES][KH_DEPTH];
	unsigned depth[KH_SITES];
	code_t fnptr[KH_SITES];
};

/* klp_ftrace_handler(), kernel/livepatch/patch.c, for the patched function whose klp_ops is
 * `ops`, called by the task `current`. */
static inline __attribute__((always_inline)) code_t klp_ftrace_handler(struct klp_ops *ops,
									 struct kh_task *current)
{
	struct klp_func *func;
	int patch_state;

	/* func = list_first_or_null_rcu(&ops->func_stack, struct klp_func, stack_node); */
	func = list_first_or_null_rcu(&ops->func_stack, struct klp_func, stack_node);

	/* if (WARN_ON_ONCE(!func)) goto unlock; */
	if (unlikely(!func))
		return ops->orig;

	/* smp_rmb(); -- orders the func_stack read before func->transition; the write barrier is
	 * in __klp_enable_patch(). */
	smp_rmb();

	/* if (unlikely(func->transition)) { */
	if (unlikely(func->transition)) {
		/* smp_rmb(); -- orders func->transition before current->patch_state; the write
		 * barrier is in klp_init_transition(). */
		smp_rmb();

		/* patch_state = current->patch_state; */
		patch_state = current->patch_state;

		/* WARN_ON_ONCE(patch_state == KLP_TRANSITION_IDLE); */
		if (unlikely(patch_state == KLP_TRANSITION_IDLE))
			current->idle_warnings++;

		/* if (patch_state == KLP_TRANSITION_UNPATCHED) { */
		if (patch_state == KLP_TRANSITION_UNPATCHED) {
			/* func = list_entry_rcu(func->stack_node.next, struct klp_func, stack_node); */
			func = list_entry_rcu(func->stack_node.next, struct klp_func, stack_node);

			/* if (&func->stack_node == &ops->func_stack) goto unlock; */
			if (&func->stack_node == &ops->func_stack)
				return ops->orig;
		}
	}

	/* if (func->nop) goto unlock; */
	if (func->nop)
		return ops->orig;

	/* ftrace_regs_set_instruction_pointer(fregs, (unsigned long)func->new_func); */
	return func->new_func;
}

/* A direct call's targets: distinct noinline functions, each returning its own constant through
 * memory and an empty asm, as dispatch's check::code functions do through black_box, so that a
 * call here costs what a call of one of those costs. */
#define KH_TARGET(k, value)                                                                    \
	__attribute__((noinline)) static uint64_t kh_target_##k(uint64_t arg)                  \
	{                                                                                      \
		(void)arg;                                                                     \
		uint64_t v = (value);                                                          \
		__asm__ __volatile__("" : : "r"(&v) : "memory");                               \
		return v;                                                                      \
	}
KH_TARGET(0, 0x6b68000000000000ull)
KH_TARGET(1, 0x6b68000000000001ull)
KH_TARGET(2, 0x6b68000000000002ull)
KH_TARGET(3, 0x6b68000000000003ull)
KH_TARGET(4, 0x6b68000000000004ull)
KH_TARGET(5, 0x6b68000000000005ull)
KH_TARGET(6, 0x6b68000000000006ull)
KH_TARGET(7, 0x6b68000000000007ull)

/* What one round of kh_direct_loop returns (its signature). */
uint64_t kh_direct_signature(void)
{
	uint64_t s = 0;
	for (uint64_t k = 0; k < KH_SITES; k++)
		s += 0x6b68000000000000ull + k;
	return s;
}

struct kh *kh_new(const code_t originals[KH_SITES])
{
	struct kh *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	for (unsigned k = 0; k < KH_SITES; k++) {
		/* INIT_LIST_HEAD(&ops->func_stack): an empty stack points at itself. */
		d->ops[k].func_stack.next = d->ops[k].func_stack.prev = &d->ops[k].func_stack;
		d->ops[k].orig = originals[k];
		d->fnptr[k] = originals[k];
	}
	return d;
}

void kh_free(struct kh *d)
{
	free(d);
}

/* list_add_rcu(&func->stack_node, &ops->func_stack) of a func for `site` (the new head), and the
 * site's function pointer set to it. Set-up only, before any loop runs. Returns 0, or -1 for a
 * site or depth out of range. */
int kh_push(struct kh *d, unsigned site, code_t new_func, bool nop, bool transition)
{
	if (site >= KH_SITES || d->depth[site] >= KH_DEPTH)
		return -1;
	struct klp_ops *ops = &d->ops[site];
	struct klp_func *func = &d->funcs[site][d->depth[site]++];
	func->new_func = new_func;
	func->nop = nop;
	func->transition = transition;
	struct list_head *head = &ops->func_stack, *first = head->next;
	func->stack_node.next = first;
	func->stack_node.prev = head;
	first->prev = &func->stack_node;
	head->next = &func->stack_node;
	d->fnptr[site] = new_func;
	return 0;
}

/* One handler call of `site` for the task `current`, outside any loop: for tests of its
 * selection. */
uint64_t kh_handler_call(struct kh *d, struct kh_task *current, unsigned site, uint64_t arg)
{
	return klp_ftrace_handler(&d->ops[site % KH_SITES], current)(arg);
}

/* The loops' own sites: static, so that each site's klp_ops has a link-time address, as the
 * ftrace trampoline of a patched function passes its ftrace_ops as a constant (the handler
 * finds its klp_ops with container_of). Set up once by kh_init_loops, before any loop
 * runs, and only read after. */
static struct kh loop_sites;

/* The loops' sites: site k's original is originals[k], its stack one func, not in
 * transition, whose new_func is news[k] (the steady state of one patch on every site); site k's
 * function pointer is news[k]. Call once, before any loop runs. */
void kh_init_loops(const code_t originals[KH_SITES], const code_t news[KH_SITES])
{
	for (unsigned k = 0; k < KH_SITES; k++) {
		struct klp_ops *ops = &loop_sites.ops[k];
		ops->func_stack.next = ops->func_stack.prev = &ops->func_stack;
		ops->orig = originals[k];
		loop_sites.depth[k] = 0;
	}
	for (unsigned k = 0; k < KH_SITES; k++)
		kh_push(&loop_sites, k, news[k], false, false);
}

/* The loops. Each site has its own call instruction (the macros unroll the 8 sites, each
 * site's operands constants at its instruction), and every call's result is summed, so that no
 * call can be dropped. */
#define KH_8(CALL) CALL(0) CALL(1) CALL(2) CALL(3) CALL(4) CALL(5) CALL(6) CALL(7)

__attribute__((noinline)) uint64_t kh_handler_loop(struct kh_task *current, size_t rounds)
{
	uint64_t s = 0;
	for (size_t r = 0; r < rounds; r++) {
#define KH_HANDLER(k) s += klp_ftrace_handler(&loop_sites.ops[k], current)(0);
		KH_8(KH_HANDLER)
#undef KH_HANDLER
	}
	return s;
}

__attribute__((noinline)) uint64_t kh_fnptr_loop(struct kh_task *current, size_t rounds)
{
	(void)current;
	uint64_t s = 0;
	for (size_t r = 0; r < rounds; r++) {
		/* Relaxed: __atomic_load_n(..., __ATOMIC_RELAXED), a plain mov on x86-64, as `fnptr`'s
		 * AtomicPtr::load(Relaxed). */
#define KH_FNPTR(k) s += __atomic_load_n(&loop_sites.fnptr[k], __ATOMIC_RELAXED)(0);
		KH_8(KH_FNPTR)
#undef KH_FNPTR
	}
	return s;
}

__attribute__((noinline)) uint64_t kh_direct_loop(struct kh_task *current, size_t rounds)
{
	(void)current;
	uint64_t s = 0;
	for (size_t r = 0; r < rounds; r++) {
#define KH_DIRECT(k) s += kh_target_##k(0);
		KH_8(KH_DIRECT)
#undef KH_DIRECT
	}
	return s;
}
