/* The parts of vn_dist that do not depend on MPI. */
#include <stdlib.h>

#include "train/vn_dist.h"

bool vn_dist_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}
