/* Private to models/: what the detector's assigner (yolo_assign.c) and its evaluation
 * (detect_eval.c) share. */
#ifndef VN_YOLO_IMPL_H
#define VN_YOLO_IMPL_H

/* The distance a DFL head predicts from its r logits z: the expectation of the bin index under
 * softmax(z) (Ultralytics' DFL module), computed in double. */
double vn__dfl_expect(const float *z, int r);

#endif
