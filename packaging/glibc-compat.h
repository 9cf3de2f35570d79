/* Force-included (gcc -include) into every C file of the bundle's SQLite and CPython builds.
 *
 * glibc 2.29 gave exp, exp2, log, log2 and pow new symbol versions (faster implementations without
 * the SVID error wrappers); a program linked against glibc >= 2.29 asks for those versions and does
 * not start on glibc 2.28 (Kylin V10, UOS 20, CentOS/RHEL 8). glibc keeps the old versions for old
 * programs, so binding to them gives the same results as a build on glibc 2.28 would, and the bundle
 * runs there. build-bundle.sh measures the newest symbol version every ELF file needs afterwards. */
#if defined(__x86_64__)
#define EDX_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define EDX_GLIBC_BASE "GLIBC_2.17"
#endif
/* not in assembler sources (CPython's Python/asm_trampoline.S gets the same CFLAGS) */
#if defined(EDX_GLIBC_BASE) && !defined(__ASSEMBLER__)
__asm__(".symver exp,exp@" EDX_GLIBC_BASE);
__asm__(".symver exp2,exp2@" EDX_GLIBC_BASE);
__asm__(".symver log,log@" EDX_GLIBC_BASE);
__asm__(".symver log2,log2@" EDX_GLIBC_BASE);
__asm__(".symver pow,pow@" EDX_GLIBC_BASE);
#endif
