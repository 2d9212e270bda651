#ifndef HERALD_BUILD_INFO_H
#define HERALD_BUILD_INFO_H

/// The git commit this binary was built from, as scripts/release-build.sh passed it in
/// (HERALD_BUILD_COMMIT); NULL when the build did not say, so `herald --version` never guesses.
const char *herald_build_commit(void);

#endif
