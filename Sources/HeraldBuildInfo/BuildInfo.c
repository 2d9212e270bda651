#include "HeraldBuildInfo.h"

const char *herald_build_commit(void) {
#ifdef HERALD_BUILD_COMMIT
    return HERALD_BUILD_COMMIT;
#else
    return 0;
#endif
}
