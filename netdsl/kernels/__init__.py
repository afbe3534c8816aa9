"""The torch kernels that layer types lower to, grouped by family as the layers are.

=================  ====================================================================
``convolution``    Convolution (and the forks' depthwise ones), Deconvolution,
                   InnerProduct, Embed: the modules with weights
``pooling``        Caffe's pooling: MAX/AVE/STOCHASTIC, the last-window clip, the mask
``spp``            SPP: one Caffe pooling per pyramid level, flattened and joined
``lrn``            Caffe's LRN, across and within channels, and its channel shards
``normalization``  BatchNorm (running sums), Scale/Bias, MVN, the SegNet/ENet BN
``elementwise``    BNLL, ReLU6, Swish, Clip, Exp, Log, Threshold, Power, PReLU, Dropout,
                   Eltwise (ReLU, Sigmoid, TanH, AbsVal, ELU lower to torch's own)
``losses``         SoftmaxWithLoss, EuclideanLoss, Accuracy, SigmoidCrossEntropyLoss,
                   ContrastiveLoss, HingeLoss, InfogainLoss, MultinomialLogisticLoss,
                   SmoothL1Loss
``plumbing``       Concat, Slice, Flatten, Reshape, DummyData, Crop, Tile, BatchReindex,
                   ArgMax, ShuffleChannel, Reduction, Filter, Im2col, Parameter
``recurrent``      LSTMUnit, and LSTM and RNN run as a loop over the timesteps
``resample``       SegNet's Upsample (max-unpooling), DeepLab's Interp (bilinear)
``detection``      SSD's Permute, PriorBox, Normalize, DetectionOutput, DetectionEvaluate
                   and their box arithmetic; Fast R-CNN's ROIPooling
``multibox``       SSD's MultiBoxLoss: matching, hard-negative mining, its two losses
=================  ====================================================================

A kernel is a plain function of tensors (the compiled graph calls it directly) or, for
layers with parameters, buffers or a phase, an ``nn.Module``. Called on a layer's bottom
tensors it returns one value per top: the tensor itself for one top, else a tuple.
Sizes and windows come from :mod:`netdsl.caffe_math`, the formulas the shape rules use.

Where these differ from the nearest ``torch.nn.functional`` op, they follow Caffe:

* **LRN**: ``F.local_response_norm`` agrees with Caffe for odd ``local_size`` but is slow
  on CPU, and for even sizes it centres the window one channel lower than Caffe's loop.
  WITHIN_CHANNEL has no torch counterpart; Caffe's shift there is 1, not ``k``.
* **Pooling**: Caffe removes a ceil-mode window that starts in the padding only when some
  pad is non-zero; torch always does, so with ``pad == 0`` and ``kernel < stride`` Caffe
  can have one more output row or column. Torch also requires ``pad <= kernel // 2`` and
  ``kernel <= input + 2 * pad``; Caffe only ``pad < kernel``. STOCHASTIC has no torch op.
  MAX's mask top holds positions as floats, as Caffe's Dtype blob does, in float32 even
  for bfloat16 or float16 input (which would round them).
* **SoftmaxWithLoss**: Caffe clamps the probability at ``FLT_MIN`` (the loss saturates at
  about 87.34 per item) and has four normalisation modes, the normaliser floored at 1.
* **Accuracy**: a tie with the true class counts *against* the hit.
* **Eltwise MAX**: the gradient goes to one input, by Caffe's tie rule, where
  ``torch.maximum`` splits it between tied inputs.
* **BatchNorm**: Caffe keeps running *sums* and a scale factor instead of an exponential
  moving average, and has no affine part.

Every kernel runs under ``torch.compile`` without a graph break: no data-dependent
Python branches (sizes are static ints at trace time).
"""
